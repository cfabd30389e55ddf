"""forge-eval: tables, --json output, crowdhuman dispatch and exit code 2 on bad input."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from forge.cli.eval import main
from forge.data.crowdhuman_reader import CrowdHumanFormatError
from forge.evaluation.coco import COCO_SUMMARY_NAMES, evaluate_coco
from forge.evaluation.lvis import LVIS_SUMMARY_NAMES
from tests.forge.evaluation.random_cases import make_coco_case, make_lvis_case

ROOT = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.pop("CI", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    case = make_coco_case(seed=11, num_images=40, num_classes=10)
    paths = {k: d / f"{k}.json" for k in ("gt", "dt_bbox", "dt_segm")}
    for k, p in paths.items():
        p.write_text(json.dumps(case[k]))
    return paths


@pytest.mark.parametrize("iou", ["bbox", "segm"])
def test_coco_table_and_json(coco_files, iou, tmp_path, capsys):
    out = tmp_path / "m.json"
    main(
        [
            "coco",
            "--gt",
            str(coco_files["gt"]),
            "--dt",
            str(coco_files["dt_" + iou]),
            "--iou",
            iou,
            "--json",
            str(out),
            "--classwise",
        ]
    )
    text = capsys.readouterr().out
    figures = json.loads(out.read_text())
    expected = evaluate_coco(str(coco_files["gt"]), str(coco_files["dt_" + iou]), iou)
    assert figures["stats"] == expected["stats"]
    for name in COCO_SUMMARY_NAMES:
        assert name in text  # the table shows every name that the json holds
        assert figures[name] == expected[name]
    assert f"{figures['mAP']:.3f}" in text
    assert len(figures["per_class"]) == 10 and figures["per_class"][-1]["AP"] is None  # nan -> null


def test_lvis(tmp_path, capsys):
    case = make_lvis_case(seed=2, num_images=20, num_classes=10)
    gt, dt = tmp_path / "gt.json", tmp_path / "dt.json"
    gt.write_text(json.dumps(case["gt"]))
    dt.write_text(json.dumps(case["dt_segm"]))
    main(["lvis", "--gt", str(gt), "--dt", str(dt), "--iou", "segm", "--json", str(tmp_path / "o.json")])
    figures = json.loads((tmp_path / "o.json").read_text())
    assert list(figures) == [*LVIS_SUMMARY_NAMES, "stats"]
    assert "APr" in capsys.readouterr().out


def test_crowdhuman_dispatch(monkeypatch, tmp_path, capsys):
    calls = {}

    def evaluate_files(gt_path, dt_path, box_type="fbox", **options):
        calls.update(gt=gt_path, dt=dt_path, box_type=box_type)
        return {"AP": 0.9, "MR-2": 0.4, "JI": 0.8, "recall": 0.95}

    fake = types.ModuleType("forge.evaluation.crowdhuman")
    fake.evaluate_files = evaluate_files
    fake.format_table = lambda r: "AP " + str(r["AP"])
    monkeypatch.setitem(sys.modules, "forge.evaluation.crowdhuman", fake)
    a, b = str(tmp_path / "a.odgt"), str(tmp_path / "b.odgt")
    for path in (a, b):
        open(path, "w").close()
    main(["crowdhuman", "--gt", a, "--dt", b, "--box-type", "vbox", "--json", str(tmp_path / "c.json")])
    assert calls == {"gt": a, "dt": b, "box_type": "vbox"}
    assert "AP 0.9" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["MR-2"] == 0.4
    main(["crowdhuman", "--gt", a, "--dt", b])
    assert calls["box_type"] == "fbox"

    def broken(*a, **k):
        raise CrowdHumanFormatError("b.odgt:3: 'dtboxes' is not a list")

    fake.evaluate_files = broken
    with pytest.raises(SystemExit) as exc:
        main(["crowdhuman", "--gt", a, "--dt", b])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == "forge-eval: error: b.odgt:3: 'dtboxes' is not a list"


@pytest.mark.parametrize("error", [KeyError("dtboxes"), ValueError("shapes (3,) and (4,) differ"), TypeError("x")])
def test_programming_errors_keep_their_traceback(monkeypatch, tmp_path, error):
    """Only input-file errors become one-line messages; a bug (even a KeyError or ValueError) propagates."""

    def buggy(*a, **k):
        raise error

    fake = types.ModuleType("forge.evaluation.crowdhuman")
    fake.evaluate_files = buggy
    fake.format_table = str
    monkeypatch.setitem(sys.modules, "forge.evaluation.crowdhuman", fake)
    gt = tmp_path / "gt.odgt"
    gt.write_text("")
    with pytest.raises(type(error)):
        main(["crowdhuman", "--gt", str(gt), "--dt", str(gt)])


def test_programming_error_traceback_in_a_real_process(coco_files, tmp_path):
    """The same through the installed entry point: a bug exits 1 with a Python traceback, not a one-liner."""
    code = (
        "import sys, forge.evaluation.coco.engine as e\n"
        "def bug(*a, **k): raise KeyError('stats')\n"
        "e.coco_summary = bug\n"
        "from forge.cli.eval import main\n"
        "main(sys.argv[1:])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "coco", "--gt", str(coco_files["gt"]), "--dt", str(coco_files["dt_bbox"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError: 'stats'" in proc.stderr
    assert "forge-eval: error" not in proc.stderr


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err.strip()


def test_bad_inputs_exit_2_with_one_line(coco_files, tmp_path, capsys):
    gt, dt = str(coco_files["gt"]), str(coco_files["dt_bbox"])
    code, err = _exit_code(["coco", "--gt", str(tmp_path / "nope.json"), "--dt", dt], capsys)
    assert code == 2 and err == f"forge-eval: error: {tmp_path / 'nope.json'}: file not found"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1000, "category_id": -5, "bbox": [0, 0, 1, 1], "score": 0.1}]))
    code, err = _exit_code(["coco", "--gt", gt, "--dt", str(bad)], capsys)
    assert code == 2 and "bad.json: result #0" in err and "unknown category_id -5" in err and "\n" not in err
    code, err = _exit_code(["coco", "--gt", gt, "--dt", dt, "--iou", "segm"], capsys)
    assert code == 2 and "missing key 'segmentation'" in err
    broken_gt = tmp_path / "gt.json"
    broken_gt.write_text("{")
    code, err = _exit_code(["coco", "--gt", str(broken_gt), "--dt", dt], capsys)
    assert code == 2 and "gt.json: not valid JSON" in err
    code, _ = _exit_code(["coco", "--gt", gt], capsys)  # argparse: missing --dt
    assert code == 2


def test_crowdhuman_end_to_end_on_the_golden_fixture(tmp_path):
    """The real command on CrowdDet's golden case reproduces the reference figures (no mocks)."""
    import os

    fixture = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "crowdhuman")
    ref = json.load(open(os.path.join(fixture, "reference.json")))["fbox"]
    out = tmp_path / "ch.json"
    from forge.cli.eval import main as eval_main

    eval_main(["crowdhuman", "--gt", os.path.join(fixture, "gt.odgt"), "--dt", os.path.join(fixture, "dt_fbox.odgt"),
               "--json", str(out)])
    got = json.load(open(out))
    for key in ("AP", "MR-2", "recall"):
        assert abs(got[key] - ref[key]) < 1e-6, key


FIXTURE = ROOT / "tests" / "fixtures" / "crowdhuman"

_NO_HEAVY_IMPORTS = """
import contextlib, io, sys
from forge.cli.eval import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    main(sys.argv[1:])
assert "AP" in out.getvalue(), out.getvalue()
heavy = sorted(m for m in ("torch", "mmengine") if m in sys.modules)
assert not heavy, f"forge-eval imported {heavy}"
print("clean")
"""


def test_every_kind_starts_without_torch_or_mmengine(coco_files, tmp_path):
    """forge-eval coco / lvis / crowdhuman, each in a fresh process on a tiny file: torch and mmengine never load."""
    lvis = make_lvis_case(seed=3, num_images=6, num_classes=5)
    lgt, ldt = tmp_path / "lgt.json", tmp_path / "ldt.json"
    lgt.write_text(json.dumps(lvis["gt"]))
    ldt.write_text(json.dumps(lvis["dt_bbox"]))
    runs = [
        ["coco", "--gt", str(coco_files["gt"]), "--dt", str(coco_files["dt_segm"]), "--iou", "segm"],
        ["lvis", "--gt", str(lgt), "--dt", str(ldt)],
        ["crowdhuman", "--gt", str(FIXTURE / "gt.odgt"), "--dt", str(FIXTURE / "dt_fbox.odgt")],
    ]
    for argv in runs:
        proc = subprocess.run(
            [sys.executable, "-c", _NO_HEAVY_IMPORTS, *argv], capture_output=True, text=True, cwd=ROOT, env=_env()
        )
        assert proc.returncode == 0 and proc.stdout.strip() == "clean", (argv[0], proc.stderr)
        assert proc.stderr == "", (argv[0], proc.stderr)  # not a terminal: no progress bar, no log line


def test_crowdhuman_input_files_are_checked_first(tmp_path, capsys):
    gt = str(FIXTURE / "gt.odgt")
    code, err = _exit_code(["crowdhuman", "--gt", gt, "--dt", str(tmp_path / "none.odgt")], capsys)
    assert code == 2 and err == f"forge-eval: error: {tmp_path / 'none.odgt'}: file not found"
    code, err = _exit_code(["crowdhuman", "--gt", str(tmp_path), "--dt", gt], capsys)
    assert code == 2 and err == f"forge-eval: error: {tmp_path}: is a directory, not a file"
    code, err = _exit_code(["crowdhuman", "--gt", gt, "--dt", gt, "--id-map", str(tmp_path / "map.json")], capsys)
    assert code == 2 and "map.json: file not found" in err
    bad = tmp_path / "dt.odgt"
    bad.write_text('{"ID": "x", "dtboxes": []}\n')  # an ID the ground truth does not have
    code, err = _exit_code(["crowdhuman", "--gt", gt, "--dt", str(bad)], capsys)
    assert code == 2 and "detections for ID 'x'" in err and "dt.odgt:1" in err and "not in the ground truth" in err
