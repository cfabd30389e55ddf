"""benchmarks/clip_shape_probe.py: its scenes carry the captioned shape, and a shortened run fills its table."""

from __future__ import annotations

import torch

from tests.benchmark_script import load_benchmark


def test_single_shape_scene_labels_follow_the_caption():
    from forge.data.semseg.synthetic import SHAPES

    probe = load_benchmark("clip_shape_probe")
    x, y, caps = probe.single_shape_scenes(12, 64, seed=3)
    assert x.shape[1:] == (3, 64, 64) and len(x) == len(y) == len(caps)
    for label, cap in zip(y.tolist(), caps):
        assert " and " not in cap and cap.endswith(" " + SHAPES[label])


def test_shortened_run_writes_the_section(tmp_path):
    probe = load_benchmark("clip_shape_probe")
    md = tmp_path / "b.md"
    md.write_text("# b\n")
    torch.manual_seed(0)
    res = probe.main(["--train", "40", "--val", "16", "--steps", "2", "--batch", "8", "--every", "1", "--threads",
                      "1", "--size", "64", "--clip", "", "--lrs", "2e-3,5e-4", "--md", str(md)])
    assert set(res["curves"]) == {f"{t}, lr {lr}" for t in ("clip_rn", "clip_rn_bn1", "plain_cnn") for lr in ("0.002",
                                                                                                         "0.0005")}
    assert all(len(c) == 2 and all(0.0 <= a <= 1.0 for _, a in c) for c in res["curves"].values())
    text = md.read_text()
    assert "<!-- clip-shape-probe:begin -->" in text and "| plain_cnn, lr 0.0005 |" in text
