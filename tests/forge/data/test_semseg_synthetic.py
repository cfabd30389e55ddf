"""The synthetic coloured-shapes scenes: captions match the painted shapes, labels match the colours, the written
split reads back through SemSegDataset."""

from __future__ import annotations

import json

import numpy as np

from forge.data.semseg import SemSegDataset
from forge.data.semseg.synthetic import COLOURS, SHAPES, make_batch, render_scene, write_semantic_split


def test_scenes_are_deterministic_and_consistent():
    a = render_scene(np.random.default_rng([0, 5]), 96)
    b = render_scene(np.random.default_rng([0, 5]), 96)
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2])) and a[2] == b[2]
    names = list(COLOURS)
    for i in range(20):
        img, lab, cap = render_scene(np.random.default_rng([1, i]), 96)
        present = sorted(int(v) for v in np.unique(lab) if v != 255)
        parts = cap.split(" and ")
        assert len(parts) >= len(present) >= 1
        named = {p.split()[1] for p in parts}
        assert {names[c] for c in present} <= named  # every visible colour is named (a shape may be covered)
        assert all(p.split()[2] in SHAPES for p in parts)
        for c in present:  # the pixels of a class have its colour (within the jitter and the noise)
            mean = img[lab == c].reshape(-1, 3).mean(0)
            assert np.abs(mean - np.array(COLOURS[names[c]])).max() < 25


def test_written_split_reads_back(tmp_path):
    out = write_semantic_split(str(tmp_path / "val"), 4, size=64, seed=9)
    ds = SemSegDataset(out, "images", "annotations", classes=tuple(COLOURS), max_raw_value=5, img_suffix=".png")
    imgs, labs, caps = make_batch(9, 0, 4, 64)
    for i in range(4):
        item = ds[i]
        np.testing.assert_array_equal(item["inputs"].permute(1, 2, 0).numpy(), imgs[i])
        np.testing.assert_array_equal(item["data_samples"].gt_sem_seg.numpy(), labs[i].astype(np.int64))
    meta = json.loads((tmp_path / "val" / "captions.json").read_text())
    assert meta["classes"] == list(COLOURS) and meta["captions"]["000002"] == caps[2]
