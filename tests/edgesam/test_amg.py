"""Automatic mask generation: the helpers against slow obvious versions, the generator on an image whose objects
are known (a hand-built stand-in decoder, ``amg_stub.py``), and against the official generator's output
(``tests/fixtures/edgesam/amg_*.json``, README there)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesam.amg import (
    SamAutomaticMaskGenerator,
    build_point_grid,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_boxes,
    remove_small_regions,
    stability_score,
)
from forge.ops import rle_iou, rle_to_mask

from .amg_stub import ObjectsPredictor, objects_image
from .official_fixtures import FIXTURES, build_case_model, generator, load_case


def _amg_cases() -> dict:
    spec = importlib.util.spec_from_file_location("edgesam_generate_amg", FIXTURES / "generate_amg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AMG_CASES


def _stub_generator(**settings) -> SamAutomaticMaskGenerator:
    amg = SamAutomaticMaskGenerator(build_case_model(load_case("sam_tiny")[0]), **settings)
    amg.predictor = ObjectsPredictor()
    return amg


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ------------------------------------------------------------------------------------------------------ helpers
def test_stability_score_matches_slow_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, 17, 23, generator=g) * 3
    got = stability_score(logits, 0.0, 1.0)
    for idx in np.ndindex(5, 3):
        m = logits[idx].numpy()
        hi, lo = m > 1.0, m > -1.0
        expect = (hi & lo).sum() / (hi | lo).sum()  # IoU of the two binarisations
        assert got[idx].item() == pytest.approx(expect, abs=1e-7)
    # a hard mask (logits far from the threshold) is perfectly stable
    hard = torch.full((1, 8, 8), -10.0)
    hard[0, 2:5, 3:7] = 10.0
    assert stability_score(hard, 0.0, 1.0).item() == 1.0


def test_point_grid_cells_and_order():
    g = build_point_grid(4)
    assert g.shape == (16, 2)
    np.testing.assert_allclose(g[:4, 0], [0.125, 0.375, 0.625, 0.875])  # x varies first
    np.testing.assert_allclose(g[:4, 1], 0.125)
    np.testing.assert_allclose(g[4, 1], 0.375)


def test_crop_boxes_cover_the_image_with_overlap():
    boxes, layers = generate_crop_boxes((100, 150), 2, 0.25)
    assert boxes[0] == [0, 0, 150, 100] and layers == [0] + [1] * 4 + [2] * 16
    for layer, n in ((1, 2), (2, 4)):
        crops = np.array([b for b, i in zip(boxes, layers) if i == layer])
        cover = np.zeros((100, 150), int)
        for x0, y0, x1, y1 in crops:
            cover[y0:y1, x0:x1] += 1
        assert cover.min() >= 1  # every pixel in some crop
        overlap = int(0.25 * 100 * 2 / n)
        assert crops[0, 2] - crops[n, 0] == overlap  # neighbours in x overlap by the stated amount


def test_mask_boxes_inclusive_and_crop_edge():
    m = torch.zeros(2, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:8] = True
    assert mask_boxes(m).tolist() == [[3, 2, 7, 4], [0, 0, 0, 0]]
    crop = [50, 0, 100, 60]  # right half of a 100 x 60 image: its left edge is inside the image
    boxes = torch.tensor([[5, 10, 30, 40], [30, 10, 49, 40]])  # crop frame
    assert is_box_near_crop_edge(boxes, crop, [0, 0, 100, 60]).tolist() == [True, False]


def test_remove_small_regions_slow_reference():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5:7, 5:7] = False  # hole of 4
    m[15:17, 15:18] = True  # island of 6
    m[14, 14] = True  # diagonal neighbour of the island: 8-connected to it -> island of 7
    filled, changed = remove_small_regions(m, 5, "holes")
    assert changed and filled[5:7, 5:7].all() and filled.sum() == m.sum() + 4
    cleaned, changed = remove_small_regions(m, 8, "islands")
    assert changed and not cleaned[14:, 14:].any() and cleaned.sum() == m.sum() - 7
    same, changed = remove_small_regions(m, 3, "islands")
    assert not changed and (same == m).all()
    tiny = np.zeros((6, 6), bool)
    tiny[0, 0] = tiny[3:5, 3:5] = True
    kept, _ = remove_small_regions(tiny, 100, "islands")  # all small: the largest stays
    assert kept.sum() == 4 and kept[3:5, 3:5].all()


# ------------------------------------------------------------------------------------------- known objects
def test_known_objects_are_found_once_each():
    image, gt = objects_image()
    records = _stub_generator(points_per_side=16, pred_iou_thresh=0.5).generate(image)
    masks = [rle_to_mask(r["segmentation"]).numpy() for r in records]
    for name in ("disc", "ring", "inner"):
        hits = [i for i, m in enumerate(masks) if _iou(m, gt[name]) > 0.5]
        assert len(hits) == 1 and _iou(masks[hits[0]], gt[name]) == 1.0, name
    rect = [m for m in masks if _iou(m, gt["rect"]) > 0.5]
    assert len(rect) == 1 and (rect[0] == gt["rect"] | gt["speck"]).all()  # no small-region removal asked
    for r, m in zip(records, masks):
        assert r["area"] == m.sum() and r["segmentation"]["size"] == [100, 150]
        ys, xs = np.nonzero(m)
        assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        x, y = r["point_coords"][0]
        assert m[int(y), int(x)] or not m.any() or r["predicted_iou"] < 0.7  # object masks contain their prompt
        assert r["predicted_iou"] > 0.5 and r["stability_score"] >= 0.95 and r["crop_box"] == [0, 0, 150, 100]


def test_small_regions_and_crops_on_known_objects():
    image, gt = objects_image()
    records = _stub_generator(points_per_side=12, points_per_batch=50, pred_iou_thresh=0.5, crop_n_layers=1,
                              crop_overlap_ratio=0.25, min_mask_region_area=10,
                              output_mode="binary_mask").generate(image)
    masks = [r["segmentation"] for r in records]
    rect = [m for m in masks if _iou(m, gt["rect_filled"]) > 0.5]
    assert len(rect) == 1 and (rect[0] == gt["rect_filled"]).all()  # hole filled, speck dropped
    assert sum(_iou(m, gt["inner"]) == 1.0 for m in masks) == 1
    assert {tuple(r["crop_box"]) for r in records} > {(0, 0, 150, 100)}  # some masks come from crops


def test_bad_arguments():
    model = build_case_model(load_case("sam_tiny")[0])
    with pytest.raises(ValueError, match="exactly one"):
        SamAutomaticMaskGenerator(model, points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        SamAutomaticMaskGenerator(model, output_mode="polygons")
    with pytest.raises(ValueError, match=r"point_grids\[0\]"):
        SamAutomaticMaskGenerator(model, points_per_side=None, point_grids=[np.array([[0.5, 1.5]])])
    with pytest.raises(ValueError, match="uint8"):
        SamAutomaticMaskGenerator(model, points_per_side=2).generate(np.zeros((8, 8), np.uint8))


# ---------------------------------------------------------------------------------------- official outputs
def _ours(name: str, case: dict) -> list[dict]:
    if case["model"] == "objects":
        return _stub_generator(**case["settings"]).generate(objects_image()[0])
    amg = SamAutomaticMaskGenerator(build_case_model(load_case(case["model"])[0]), **case["settings"])
    return amg.generate(generator().fixture_image())


@pytest.mark.parametrize("name", ["objects_grid", "objects_crops", "sam_tiny_grid"])
def test_matches_official_generator(name):
    case = _amg_cases()[name]
    ref = json.loads((Path(FIXTURES) / f"amg_{name}.json").read_text())
    assert ref["settings"] == case["settings"]
    ours, theirs = _ours(name, case), ref["records"]
    assert len(ours) == len(theirs)
    exact = case["model"] == "objects"  # identical decoder outputs; the real model differs in the last bits
    ious = rle_iou([r["segmentation"] for r in ours], [r["segmentation"] for r in theirs]).diagonal()
    assert ious.min() == 1.0 if exact else ious.min() > 0.99
    for a, b in zip(ours, theirs):
        assert a["point_coords"][0] == pytest.approx(b["point_coords"][0], abs=1e-9)
        assert a["crop_box"] == b["crop_box"]
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-6 if exact else 1e-5)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-6 if exact else 1e-2)
        if exact:
            assert a["bbox"] == b["bbox"] and a["area"] == b["area"] and a["segmentation"] == b["segmentation"]
        else:
            assert np.abs(np.subtract(a["bbox"], b["bbox"])).max() <= 1
            assert abs(a["area"] - b["area"]) <= 0.01 * b["area"]
