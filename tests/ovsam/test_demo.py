"""``make demo-ovsam`` in its shortened form: a seeded CLIP, a 2-iteration SAM teacher, both OVSAM stages through
forge-train, the evaluation on the held-out split, the figure and a docs section (a temporary copy)."""

from __future__ import annotations

import os

import pytest

from tests.benchmark_script import load_benchmark


@pytest.mark.slow  # four forge-train processes: ~50 s of CPU, ~90 s on the shared machine
def test_quick_demo(tmp_path):
    demo = load_benchmark("ovsam_demo")
    md = tmp_path / "bench.md"
    md.write_text("# benchmarks\n\nkept text\n")
    fig = tmp_path / "fig.png"
    out = demo.main(["--quick", "--threads", "1", "--data", str(tmp_path / "data"), "--work-dir",
                     str(tmp_path / "work"), "--md", str(md), "--figure", str(fig)])
    # three Adam steps on the seeded adapter already lower the validation feature error
    assert out["mse_after"] < out["mse_before"]
    assert len(out["novel"]) == 10 and len(out["base"]) == 20
    summ = out["summary"]
    assert summ["chance"] == pytest.approx(1 / 30)
    for split in ("base", "novel"):
        assert summ[split]["n"] > 0
        assert all(0 <= summ[split][k] <= 1 for k in ("fused", "head", "clip", "colour", "shape", "miou"))
    # forge-test (OVSAMEvaluator + PromptSegMetric) scored the same instances as the script's own loop
    ft = out["forge_test"]["metrics"]
    assert ft["prompt/acc_base"] == pytest.approx(summ["base"]["fused"], abs=1e-6)
    assert ft["prompt/mIoU_novel"] == pytest.approx(summ["novel"]["miou"], abs=1e-5)
    text = md.read_text()
    assert "forge-test experiment=ovsam/eval_shapes_box" in text
    assert "kept text" in text and "<!-- ovsam-demo:begin -->" in text and "| held out (10) |" in text
    assert fig.stat().st_size > 10_000
    assert os.path.isfile(out["clip2sam"]["checkpoint"])
