"""`make demo-edgesam` in its shortened form: data, teacher, both phases through forge-train, numbers read back and
written into a docs section (a temporary copy)."""

from __future__ import annotations

import os

import pytest

from tests.benchmark_script import load_benchmark


@pytest.mark.slow  # three forge-train processes: ~50 s on 2 free cores, ~130 s on the shared machine
def test_quick_demo(tmp_path):
    demo = load_benchmark("edgesam_demo")
    md = tmp_path / "bench.md"
    md.write_text("# benchmarks\n\nkept text\n")
    # a goal no teacher reaches: reported in the section, and the students still distil it
    out = demo.main(["--quick", "--threads", "1", "--data", str(tmp_path / "data"), "--work-dir",
                     str(tmp_path / "work"), "--md", str(md), "--figure", "", "--target", "1.01"])
    assert 0 <= out["teacher"] <= 1 and out["below_target"] and len(out["rows"]) == 2
    for _, vs_gt, vs_teacher, _ in out["rows"]:
        assert 0 <= vs_gt <= 1 and 0 <= vs_teacher <= 1
    text = md.read_text()
    assert "kept text" in text and "<!-- edgesam-demo:begin -->" in text and "| teacher |" in text
    assert "below the demo's goal of GT-box mIoU >= 1.01" in text
    assert os.path.isfile(out["runs"]["phase2"]["checkpoint"])
