"""The shortened ``make demo-denseclip``: a small CLIP trained for 40 steps on synthetic coloured shapes already
lets MaskCLIP beat chance mIoU clearly and names colours zero-shot; MaskCLIP+ trains on its pseudo-labels (loss
falls)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmark_script import load_benchmark


@pytest.mark.slow
def test_quick_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSECLIP_CACHE", str(tmp_path / "cache"))
    demo = load_benchmark("denseclip_demo")
    res = demo.run(demo.parse(["--quick", "--silent", "--threads", "1"]))
    assert res["clip"]["steps"] == 40 and res["clip"]["loss"] < res["clip"]["first_loss"] - 0.5
    assert 0.05 < res["chance"] < 0.15  # 6 classes, uniformly random labels
    assert res["maskclip"] > res["chance"] + 0.1, res
    # zero-shot naming of single-shape scenes among 30 captions: colours already well above their chance of 1/6
    naming = res["naming"]
    assert naming["images"] > 40 and naming["colour"] > 0.4 and 0.0 <= naming["shape"] <= 1.0, naming
    losses = res["plus_losses"]
    assert len(losses) == 20 and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert 0.0 <= res["maskclip_plus"] <= 1.0
