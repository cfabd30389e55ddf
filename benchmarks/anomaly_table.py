"""Anomaly benchmarks: prints markdown tables (and optionally writes them / raw JSON).

Parts (``--part``):

* ``gaal``    ROC-AUC (mean ± std over seeds) and fit time of our SO-GAAL / MO-GAAL against PyOD's ``SO_GAAL`` /
              ``MO_GAAL`` (as shipped = raw D(x), and sign-corrected = 1 - D(x), from the same fit), kNN, LOF,
              Isolation Forest and OCSVM (PyOD) on every shared ADBench set plus the bundled ``breast_cancer``.
              All methods get the same min-max scaled input (GAAL needs [0, 1]).
* ``rglasso`` synthetic Rglasso table for p = 50, 100, 200: support F1 of Θ, corrupted-entry ROC-AUC / F1, error of F
              and time, against scikit-learn ``GraphicalLasso`` (on the corrupted M — it fails when M is indefinite,
              and on the clean M as an oracle), ``MinCovDet`` (on the samples), Robust PCA (PCP on M) and the naive
              ranking of ``|corr(M)|``.
* ``real``    Mahalanobis outlier scores on the shared sets: Rglasso precision vs ``MinCovDet``,
              ``EllipticEnvelope``, RPCA (PCP on the standardised data) and the plain empirical covariance.

Each part writes its own section of ``docs/benchmarks.md`` (``--doc``; ``--doc ''`` only prints):
``anomaly-rglasso-synthetic``, ``anomaly-rglasso-real``, ``anomaly-gaal`` (``anomaly-gaal-paper-stop`` with
``--paper-stop-epochs``); a summary computed from the table closes each section.

Examples::

    OMP_NUM_THREADS=1 python benchmarks/anomaly_table.py --part rglasso --seeds 5
    OMP_NUM_THREADS=1 python benchmarks/anomaly_table.py --part gaal --seeds 5 --datasets WDBC,Stamps,breast_cancer
    OMP_NUM_THREADS=1 python benchmarks/anomaly_table.py --part all --seeds 3 --out /tmp/anomaly_tables.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly.data import ADBENCH_DIR, list_adbench, load_breast_cancer, load_npz  # noqa: E402
from anomaly.metrics import entry_detection_metrics, offdiag_upper, relative_error, support_metrics  # noqa: E402
from anomaly.rglasso import RobustGraphicalLasso  # noqa: E402
from anomaly.rpca import RobustPCA, principal_component_pursuit  # noqa: E402
from anomaly.synthetic import make_rglasso_problem  # noqa: E402
from forge.docsection import machine_line, replace_section  # noqa: E402
from forge.evaluation.outlier import roc_auc  # noqa: E402

SECTIONS = {"rglasso": "anomaly-rglasso-synthetic", "real": "anomaly-rglasso-real", "gaal": "anomaly-gaal"}

# per-data-set stop_epochs (SO, MO) from the official repository's PARAMETERS.txt (facts, not code)
PAPER_STOP_EPOCHS = {
    "annthyroid": (22, 22), "ionosphere": (100, 300), "pageblocks": (28, 40), "pendigits": (6, 9),
    "pima": (200, 250), "shuttle": (90, 120), "spambase": (40, 40), "stamps": (200, 200), "waveform": (10, 30),
    "wdbc": (200, 200),
}


def _stop_epochs(name: str, args) -> tuple[int, int]:
    if args.paper_stop_epochs:
        key = name.split("_", 1)[-1].lower()
        if key in PAPER_STOP_EPOCHS:
            return PAPER_STOP_EPOCHS[key]
    return args.stop_epochs, args.stop_epochs


def _minmax(X: np.ndarray) -> np.ndarray:
    rng = X.max(0) - X.min(0)
    return (X - X.min(0)) / np.where(rng > 0, rng, 1.0)


def _datasets(selection: str | None, exclude: str | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = [("breast_cancer", *load_breast_cancer())]
    for f in list_adbench():
        out.append((f.stem, *load_npz(f)))
    if selection and selection != "all":
        keys = [s.strip().lower() for s in selection.split(",") if s.strip()]
        out = [d for d in out if any(k in d[0].lower() for k in keys)]
    if exclude:
        keys = [s.strip().lower() for s in exclude.split(",") if s.strip()]
        out = [d for d in out if not any(k in d[0].lower() for k in keys)]
    return out


def _timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    t = time.perf_counter()
    r = fn(*args, **kwargs)
    return r, time.perf_counter() - t


def _ms(vals: list[float]) -> str:
    v = np.asarray([x for x in vals if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "—"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v[0]:.3f}"


# ------------------------------------------------------------------------------------------------------------- GAAL
def run_gaal(args) -> tuple[str, dict]:
    import torch
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.mo_gaal import MO_GAAL
    from pyod.models.ocsvm import OCSVM
    from pyod.models.so_gaal import SO_GAAL

    from anomaly.gaal import MOGAAL, SOGAAL

    torch.set_num_threads(1)
    methods = GAAL_METHODS
    raw: dict = {}
    for name, X, y in _datasets(args.datasets, args.exclude):
        Xs = _minmax(X)
        res = {m: {"auc": [], "time": []} for m in methods}

        def add(m, auc, t, res=res):
            res[m]["auc"].append(auc)
            res[m]["time"].append(t)

        se = dict(zip(("SO", "MO"), _stop_epochs(name, args)))
        for seed in range(args.seeds):
            for cls, m in ((SOGAAL, "SO-GAAL (ours)"), (MOGAAL, "MO-GAAL (ours)")):
                model, t = _timed(cls(stop_epochs=se[m[:2]], random_state=seed, progress=False, device="cpu").fit, Xs)
                add(m, roc_auc(y, model.decision_scores_), t)
            for cls, m in ((SO_GAAL, "PyOD SO_GAAL"), (MO_GAAL, "PyOD MO_GAAL")):
                torch.manual_seed(seed)
                np.random.seed(seed)
                with contextlib.redirect_stdout(io.StringIO()):  # PyOD prints one line per epoch
                    model, t = _timed(cls(stop_epochs=se[m[5:7]]).fit, Xs)
                auc = roc_auc(y, model.decision_scores_)
                add(m + " shipped", auc, t)
                add(m + " 1-D", 1.0 - auc, t)
            model, t = _timed(IForest(random_state=seed).fit, Xs)
            add("IForest", roc_auc(y, model.decision_scores_), t)
            if seed == 0:  # deterministic methods: one fit
                for cls, m in ((KNN, "kNN"), (LOF, "LOF")):
                    model, t = _timed(cls().fit, Xs)
                    add(m, roc_auc(y, model.decision_scores_), t)
                if len(Xs) <= args.max_n_ocsvm:
                    model, t = _timed(OCSVM().fit, Xs)
                    add("OCSVM", roc_auc(y, model.decision_scores_), t)
        raw[name] = {"shape": list(X.shape), "n_outliers": int(y.sum()), "seeds": args.seeds,
                     "stop_epochs": se, **res}
        print(f"[gaal] {name} {X.shape}: " + ", ".join(f"{m} {_ms(r['auc'])}" for m, r in res.items()), flush=True)
        if args.json:  # partial results survive an interrupted run
            Path(args.json).write_text(json.dumps({"gaal": raw}, indent=1, default=float))
    return render_gaal(raw, args), raw


GAAL_METHODS = ["SO-GAAL (ours)", "MO-GAAL (ours)", "PyOD SO_GAAL 1-D", "PyOD SO_GAAL shipped", "PyOD MO_GAAL 1-D",
                "PyOD MO_GAAL shipped", "kNN", "LOF", "IForest", "OCSVM"]


def render_gaal(raw: dict, args) -> str:
    """Markdown tables (AUC, fit time) from the raw per-data-set results of :func:`run_gaal`."""
    methods = GAAL_METHODS

    def first_cols(name: str, r: dict) -> str:
        se = r.get("stop_epochs") or {"SO": args.stop_epochs, "MO": args.stop_epochs}
        return f"| {name} | {r['shape'][0]} × {r['shape'][1]} | {r.get('seeds', args.seeds)} | {se['SO']}/{se['MO']} | "

    head = "| data set | n × d | seeds | stop SO/MO | " + " | ".join(methods) + " |"
    rule = "|" + "---|" * (len(methods) + 4)
    lines = ["ROC-AUC, mean ± std over seeds (kNN/LOF/OCSVM are deterministic: one fit; OCSVM skipped above "
             f"{args.max_n_ocsvm} samples); 'stop SO/MO' = stop_epochs of the GAAL models (3x as many epochs); "
             "inputs min-max scaled; 'PyOD … shipped' = PyOD's decision_scores_ as returned (raw D(x)), "
             "'1-D' = the same fits with the sign corrected.", "", head, rule]
    for name, r in raw.items():
        lines.append(first_cols(name, r) + " | ".join(_ms(r[m]["auc"]) for m in methods) + " |")
    means = {m: np.nanmean([np.mean(r[m]["auc"]) if r[m]["auc"] else np.nan for r in raw.values()]) for m in methods}
    lines.append("| **mean** | | | | " + " | ".join(f"**{means[m]:.3f}**" for m in methods) + " |")
    if "breast_cancer" in raw:
        bc = {m: _ms(raw["breast_cancer"][m]["auc"]) for m in methods}
        lines += ["", f"breast_cancer (`make demo-anomaly`): ours SO {bc['SO-GAAL (ours)']}, "
                  f"MO {bc['MO-GAAL (ours)']}; PyOD as shipped SO {bc['PyOD SO_GAAL shipped']}, "
                  f"MO {bc['PyOD MO_GAAL shipped']} "
                  f"(sign-corrected {bc['PyOD SO_GAAL 1-D']}, {bc['PyOD MO_GAAL 1-D']})."]
    lines += ["", "Fit time (s, mean over seeds):", "", head, rule]
    for name, r in raw.items():
        lines.append(first_cols(name, r)
                     + " | ".join(f"{np.mean(r[m]['time']):.2f}" if r[m]["time"] else "—" for m in methods) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- Rglasso
def run_rglasso(args) -> tuple[str, dict]:
    from sklearn.covariance import MinCovDet, graphical_lasso

    rows: dict = {}
    ps = [int(p) for p in args.dims.split(",")]
    for p in ps:
        acc: dict = {}

        def add(method, acc=acc, **kv):
            d = acc.setdefault(method, {})
            for k, v in kv.items():
                d.setdefault(k, []).append(v)

        for seed in range(args.seeds):
            prob = make_rglasso_problem(p=p, seed=seed)
            dg = 1.0 / np.sqrt(np.diag(prob.M))
            C = prob.M * np.outer(dg, dg)  # correlation scale: the same ρ for every method
            model, t = _timed(RobustGraphicalLasso(rho=args.rho, lam=args.lam).fit, covariance=prob.M,
                              n_samples=prob.X.shape[0])
            rho = model.rho_  # the baselines get Rglasso's (resolved) graph penalty
            det = entry_detection_metrics(model.outliers_, prob.mask)
            add("Rglasso (ours)", f1=support_metrics(model.precision_sparse_, prob.precision)["f1"], auc=det["auc"],
                ef1=det["f1"], dens=det["density_ratio"], ferr=relative_error(model.covariance_, prob.M_clean),
                time=t, fail=0, iters=model.n_iter_, rho=model.rho_, lam=model.lam_)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    (_, prec), t = _timed(graphical_lasso, C, alpha=rho, max_iter=200)
                add("GraphicalLasso (corrupted M)", f1=support_metrics(prec, prob.precision)["f1"], time=t, fail=0)
            except (FloatingPointError, ValueError, np.linalg.LinAlgError) as e:
                add("GraphicalLasso (corrupted M)", time=np.nan, fail=1, error=type(e).__name__ + ": " + str(e)[:80])
            dc = 1.0 / np.sqrt(np.diag(prob.M_clean))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (_, prec), t = _timed(graphical_lasso, prob.M_clean * np.outer(dc, dc), alpha=rho, max_iter=200)
            add("GraphicalLasso (clean M, oracle)", f1=support_metrics(prec, prob.precision)["f1"], time=t, fail=0)
            mcd, t = _timed(MinCovDet(random_state=seed).fit, prob.X)
            thr = np.abs(mcd.precision_) > 0.05 * np.abs(np.diag(mcd.precision_)).max()  # dense: threshold at 5 %
            add("MinCovDet (samples X)", f1=support_metrics(np.where(thr, mcd.precision_, 0), prob.precision)["f1"],
                ferr=relative_error(mcd.covariance_, prob.M_clean), time=t, fail=0)
            (L, S, _), t = _timed(principal_component_pursuit, C)
            S = S / np.outer(dg, dg)
            np.fill_diagonal(S, 0.0)
            det = entry_detection_metrics(S, prob.mask)
            try:  # graph from RPCA: graphical lasso on the PSD-projected cleaned part M - S (correlation scale)
                from anomaly.admm_ops import project_psd

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _, prec = graphical_lasso(project_psd(L, eps=1e-3), alpha=rho, max_iter=200)
                rf1 = support_metrics(prec, prob.precision)["f1"]
            except (FloatingPointError, ValueError, np.linalg.LinAlgError):
                rf1 = np.nan
            add("RPCA (PCP on M)", f1=rf1, auc=det["auc"], ef1=det["f1"], dens=det["density_ratio"],
                ferr=relative_error(prob.M - S, prob.M_clean), time=t, fail=0)
            add("no cleaning: M itself, rank abs(corr(M))", auc=roc_auc(offdiag_upper(prob.mask).astype(int),
                                                       np.abs(offdiag_upper(C))),
                ferr=relative_error(prob.M, prob.M_clean), time=0.0, fail=0)
        rows[p] = acc
        print(f"[rglasso] p={p}: " + ", ".join(f"{m} auc {_ms(d.get('auc', []))} f1 {_ms(d.get('f1', []))}"
                                                 for m, d in acc.items()), flush=True)

    lines = [f"Synthetic: sparse Θ* (≈2 neighbours per variable), n = 5p samples, 1 % of off-diagonal pairs of M "
             f"corrupted by ±U(0.5, 1)·sqrt(M_ii M_jj); {args.seeds} seeds; Rglasso ρ = {args.rho}, λ = {args.lam} "
             f"(correlation scale; auto = default_penalties(p, n)), GraphicalLasso with Rglasso's ρ. "
             f"Support F1 = off-diagonal support of Θ; entry AUC/F1 = |S| vs planted entries; "
             f"F err = ||F − M_clean||_F / ||M_clean||_F; dens = nnz(S) / planted.", "",
             "| p | method | support F1 | entry AUC | entry F1 | dens | F err | time (s) | failures |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p, acc in rows.items():
        for m, d in acc.items():
            lines.append(f"| {p} | {m} | {_ms(d.get('f1', []))} | {_ms(d.get('auc', []))} | {_ms(d.get('ef1', []))}"
                         f" | {_ms(d.get('dens', []))} | {_ms(d.get('ferr', []))} | {_ms(d.get('time', []))} | "
                         f"{int(np.sum(d['fail']))}/{len(d['fail'])} |")
    errs = {e for acc in rows.values() for e in acc.get("GraphicalLasso (corrupted M)", {}).get("error", [])}
    if errs:
        lines += ["", "GraphicalLasso on the corrupted M raised: " + "; ".join(sorted(errs)[:3])]
    ours = {p: acc["Rglasso (ours)"] for p, acc in rows.items()}
    lines += ["", "Rglasso per p: " + "; ".join(
        f"p = {p}: ρ {np.mean(d['rho']):.3f}, λ {np.mean(d['lam']):.2f}, entry AUC {np.mean(d['auc']):.3f}, "
        f"dens {np.mean(d['dens']):.2f}, {np.mean(d['time']):.2f} s per fit" for p, d in ours.items())]
    return "\n".join(lines), {str(p): {m: {k: v for k, v in d.items()} for m, d in acc.items()}
                              for p, acc in rows.items()}


# ------------------------------------------------------------------------------------------------------- real data
def run_real(args) -> tuple[str, dict]:
    from sklearn.covariance import EllipticEnvelope, EmpiricalCovariance, MinCovDet

    methods = ["Rglasso (ours)", "MinCovDet", "EllipticEnvelope", "RPCA (PCP)", "Empirical cov."]
    raw: dict = {}
    for name, X, y in _datasets(args.datasets, args.exclude):
        X = X[:, X.std(0) > 0]
        Xs = (X - X.mean(0)) / X.std(0)
        r: dict = {}
        with warnings.catch_warnings():  # non-convergence shows in the converged column instead
            warnings.simplefilter("ignore")
            m, t = _timed(RobustGraphicalLasso(rho=args.rho, lam=args.lam).fit, Xs)
        conv = bool(m.converged_)
        r["Rglasso (ours)"] = (roc_auc(y, m.decision_scores_), t)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, t = _timed(MinCovDet(random_state=0).fit, Xs)
            r["MinCovDet"] = (roc_auc(y, m.mahalanobis(Xs)), t)
            m, t = _timed(EllipticEnvelope(random_state=0, contamination=0.1).fit, Xs)
            r["EllipticEnvelope"] = (roc_auc(y, -m.decision_function(Xs)), t)
        m, t = _timed(RobustPCA().fit, Xs)
        r["RPCA (PCP)"] = (roc_auc(y, m.decision_scores_), t)
        m, t = _timed(EmpiricalCovariance().fit, Xs)
        r["Empirical cov."] = (roc_auc(y, m.mahalanobis(Xs)), t)
        raw[name] = {"shape": list(X.shape), "rglasso_converged": conv,
                     **{k: {"auc": v[0], "time": v[1]} for k, v in r.items()}}
        print(f"[real] {name} {X.shape}: " + ", ".join(f"{k} {v[0]:.3f} ({v[1]:.2f}s)" for k, v in r.items()),
              flush=True)
    head = "| data set | n × d | " + " | ".join(f"{m} AUC / s" for m in methods) + " |"
    lines = [f"Mahalanobis outlier scores on standardised data (RPCA: residual off the PCP low-rank subspace); "
             f"Rglasso ρ = {args.rho}, λ = {args.lam} (auto = default_penalties(p, n) per set); "
             f"MCD/EllipticEnvelope random_state 0.", "",
             head, "|" + "---|" * (len(methods) + 2)]
    for name, d in raw.items():
        lines.append(f"| {name} | {d['shape'][0]} × {d['shape'][1]} | "
                     + " | ".join(f"{d[m]['auc']:.3f} / {d[m]['time']:.2f}" for m in methods) + " |")
    lines.append("| **mean** | | " + " | ".join(
        f"**{np.mean([d[m]['auc'] for d in raw.values()]):.3f}** / {np.mean([d[m]['time'] for d in raw.values()]):.2f}"
        for m in methods) + " |")
    mean = {m: float(np.mean([d[m]["auc"] for d in raw.values()])) for m in methods}
    sec = {m: float(np.mean([d[m]["time"] for d in raw.values()])) for m in methods}
    bad = [name for name, d in raw.items() if not d.get("rglasso_converged", True)]
    lines += ["", f"Over {len(raw)} sets: mean ROC-AUC Rglasso {mean['Rglasso (ours)']:.3f}, MinCovDet "
              f"{mean['MinCovDet']:.3f}, empirical covariance {mean['Empirical cov.']:.3f} (Rglasso − empirical = "
              f"{mean['Rglasso (ours)'] - mean['Empirical cov.']:+.3f}); mean fit time Rglasso "
              f"{sec['Rglasso (ours)']:.2f} s vs MinCovDet {sec['MinCovDet']:.2f} s. Rglasso did not converge on: "
              + (", ".join(bad) or "none") + "."]
    return "\n".join(lines), raw


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["gaal", "rglasso", "real", "all"], default="all")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default="all", help="comma-separated substrings of data set names, or 'all'")
    ap.add_argument("--stop-epochs", type=int, default=20, help="GAAL stop_epochs (3x that many epochs)")
    ap.add_argument("--paper-stop-epochs", action="store_true",
                    help="per-data-set stop_epochs from the official PARAMETERS.txt (others: --stop-epochs)")
    ap.add_argument("--max-n-ocsvm", type=int, default=20000, help="skip OCSVM (O(n^2)) above this many samples")
    ap.add_argument("--dims", default="50,100,200", help="Rglasso synthetic dimensions")
    ap.add_argument("--rho", type=_penalty, default="auto", help="Rglasso ρ: a number or auto (the default)")
    ap.add_argument("--lam", type=_penalty, default="auto", help="Rglasso λ: a number or auto (the default)")
    ap.add_argument("--exclude", help="comma-separated substrings of data set names to leave out")
    ap.add_argument("--render-gaal", nargs="+", metavar="JSON",
                    help="only render (and write) the GAAL table merged from the --json files of earlier runs")
    ap.add_argument("--doc", default="docs/benchmarks.md", help="write each part's section here ('' to only print)")
    ap.add_argument("--out", help="also write the markdown tables here")
    ap.add_argument("--json", help="also write the raw numbers here")
    args = ap.parse_args(argv)
    cmd = "python benchmarks/anomaly_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    gaal_section = SECTIONS["gaal"] + ("-paper-stop" if args.paper_stop_epochs else "")
    if args.render_gaal:
        merged: dict = {}
        for f in args.render_gaal:
            merged.update(json.loads(Path(f).read_text())["gaal"])
        text = render_gaal(merged, args)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        if args.doc:
            replace_section(args.doc, gaal_section, f"{_machine()}\n\nCommand: `{cmd}`\n\n{text}")
        return
    if args.part in ("gaal", "real", "all") and not ADBENCH_DIR.exists():
        print(f"note: shared ADBench folder {ADBENCH_DIR} is absent; only breast_cancer is used", file=sys.stderr)
    parts = ["gaal", "rglasso", "real"] if args.part == "all" else [args.part]
    md, raw = [f"Machine: {_machine()}", f"Command: {cmd}"], {}
    for part in parts:
        t0 = time.perf_counter()
        table, data = {"gaal": run_gaal, "rglasso": run_rglasso, "real": run_real}[part](args)
        wall = time.perf_counter() - t0
        md += ["", f"### {part} (wall time {wall:.0f} s)", "", table]
        raw[part] = data
        if args.doc:
            name = gaal_section if part == "gaal" else SECTIONS[part]
            replace_section(args.doc, name, f"{_machine()}; wall time {wall:.0f} s.\n\nCommand: `{cmd}`\n\n{table}")
            print(f"wrote section {name!r} of {args.doc}", flush=True)
    text = "\n".join(md)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=float))


def _penalty(value: str) -> float | str:
    """``--rho`` / ``--lam``: a number or ``auto``."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def _machine() -> str:
    """:func:`forge.docsection.machine_line` plus the thread setting and the library versions behind the tables."""
    import sklearn

    versions = f"scikit-learn {sklearn.__version__}"
    try:
        import pyod

        versions += f", PyOD {pyod.__version__}"
    except ImportError:
        pass
    return f"{machine_line()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {versions}"


if __name__ == "__main__":
    main()
