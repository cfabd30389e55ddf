"""The anomaly benchmark scripts write their own docs sections, with summaries computed from their tables."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

from tests.benchmark_script import load_benchmark


def _script(name: str) -> types.ModuleType:
    return load_benchmark(name)


def _doc(tmp_path, *names: str):
    path = tmp_path / "benchmarks.md"
    path.write_text("# B\n\nkept text\n\n" + "".join(f"<!-- {n}:begin -->\nold\n<!-- {n}:end -->\n\n" for n in names)
                    + "tail\n")
    return path


def _section(path, name: str) -> str:
    text = path.read_text()
    assert "kept text" in text and text.endswith("tail\n")
    return text.split(f"<!-- {name}:begin -->")[1].split(f"<!-- {name}:end -->")[0]


def test_anomaly_table_real_and_synthetic_write_their_sections(tmp_path):
    table = _script("anomaly_table")
    doc = _doc(tmp_path, "anomaly-rglasso-real", "anomaly-rglasso-synthetic")
    table.main(["--part", "real", "--datasets", "breast_cancer", "--doc", str(doc)])
    body = _section(doc, "anomaly-rglasso-real")
    assert "old" not in body and "Command: `python benchmarks/anomaly_table.py --part real" in body
    row = re.search(r"\| breast_cancer \| 378 × 30 \| ([0-9.]+) / [0-9.]+ \| ([0-9.]+) / ([0-9.]+) \|", body)
    summary = re.search(r"mean ROC-AUC Rglasso ([0-9.]+), MinCovDet ([0-9.]+), empirical covariance ([0-9.]+) "
                        r"\(Rglasso − empirical = ([-+0-9.]+)\); mean fit time Rglasso ([0-9.]+) s vs MinCovDet "
                        r"([0-9.]+) s", body)
    assert row and summary, body
    assert summary.group(1) == row.group(1) and summary.group(2) == row.group(2)  # one set: the means are the row
    emp = re.search(r"\| ([0-9.]+) / [0-9.]+ \|\n\| \*\*mean", body).group(1)
    assert summary.group(3) == emp
    assert float(summary.group(4)) == pytest.approx(float(row.group(1)) - float(emp), abs=1.5e-3)

    table.main(["--part", "rglasso", "--dims", "12", "--seeds", "1", "--doc", str(doc)])
    body = _section(doc, "anomaly-rglasso-synthetic")
    assert "| 12 | Rglasso (ours) |" in body and "Rglasso per p: p = 12: ρ " in body
    assert "old" not in _section(doc, "anomaly-rglasso-real")  # the other section is left as written


def test_rglasso_selection_section(tmp_path):
    sel = _script("rglasso_selection")
    doc = _doc(tmp_path, sel.SECTION)
    sel.main(["--dims", "12", "--corruptions", "0.05", "--seeds", "1", "--cv-dims", "12", "--doc", str(doc)])
    body = _section(doc, sel.SECTION)
    rows = re.findall(r"\| 12 \| 5 % \| (fixed 0.2 / 1.0|auto|CV) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", body)
    assert [r[0] for r in rows] == ["fixed 0.2 / 1.0", "auto", "CV"], body
    assert rows[0][1:3] == ("0.200", "1.00")
    from anomaly.rglasso import default_penalties

    rho, lam = default_penalties(12, 60)
    assert rows[1][1:3] == (f"{rho:.3f}", f"{lam:.2f}")  # auto = the p/n-scaled default
    for method, _, _, dens in rows:  # the summary repeats the (single-cell) densities
        assert f"* {method}: dens {dens}–{dens} over 1 cells" in body


def test_gaal_stop_render_and_selection():
    stop = _script("gaal_stop")
    args = types.SimpleNamespace(seeds=2, stop_epochs=20, window=5, tol=0.01, max_stop_epochs=100, exclude="shuttle",
                                 argv=[])

    def fits(auc, epochs, reached=True):
        return {"auc": auc, "time": [1.0, 1.0], "epochs": epochs, "reached": [reached, reached]}

    results = {"a": {"shape": (10, 2), ("SOGAAL", 20): fits([0.8, 0.8], [20, 20]),
                     ("SOGAAL", "auto"): fits([0.9, 0.9], [30, 40]), ("MOGAAL", 20): fits([0.7, 0.7], [20, 20]),
                     ("MOGAAL", "auto"): fits([0.7, 0.7], [100, 100], reached=False)}}
    body = stop.render(results, args, wall=1.0)
    assert "| a | 10 × 2 | 0.800 ± 0.000 | 0.900 ± 0.000 | 35 | 0.700 ± 0.000 | 0.700 ± 0.000 | 100* |" in body
    assert "* SOGAAL: auto − fixed = +0.100 mean ROC-AUC over 1 sets; auto better by more than 0.01 on 1" in body
    assert "* MOGAAL: auto − fixed = +0.000" in body
    names = [d[0] for d in stop.datasets("breast", "")]
    assert names[0] == "breast_cancer" and all("breast" in n.lower() for n in names)
    assert "breast_cancer" not in [d[0] for d in stop.datasets("all", "cancer")]
    assert np.isfinite(stop.datasets("breast_cancer", "")[0][1]).all()
