"""Semantic-segmentation transforms against the formulas of mmsegmentation 0.x (MaskCLIP+'s pipeline)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from forge.data.structures import ImageMeta
from forge.data.transforms.semseg import (
    PadSeg,
    RandomCropSeg,
    RandomFlipSeg,
    RandomResizeSeg,
    SegPhotometricDistort,
    SuppressLabels,
    rescale_size,
)


def _sample(h=30, w=40, seed=0):
    rng = np.random.default_rng(seed)
    return dict(img=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), gt_seg=rng.integers(0, 5, (h, w)).astype(np.int64),
                meta=ImageMeta(image_id=0, ori_shape=(h, w), img_shape=(h, w)))


@pytest.mark.parametrize("hw,scale,expect", [
    ((375, 500), (2048, 512), (512, 683)),  # VOC / COCO-Stuff test: short side 512
    ((375, 500), (520, 520), (390, 520)),   # Context test: long side 520
    ((100, 3000), (2048, 512), (68, 2048)),  # the long-side bound wins
])
def test_rescale_size(hw, scale, expect):
    assert rescale_size(*hw, scale) == expect


def test_random_resize_range_and_nearest_labels():
    np.random.seed(0)
    t = RandomResizeSeg((80, 20), ratio_range=(0.5, 2.0))
    sizes = set()
    for _ in range(20):
        s = t(_sample())
        h, w = s["img"].shape[:2]
        sizes.add((h, w))
        assert s["gt_seg"].shape == (h, w) and set(np.unique(s["gt_seg"])) <= set(range(5))
        assert 10 * 30 / 30 - 1 <= h <= 40 + 1  # short side in [20 * 0.5, 20 * 2]
    assert len(sizes) > 5
    s = RandomResizeSeg((2048, 60))(_sample())  # exact test resize: 30x40 -> 60x80, as cv2 bilinear
    ref = cv2.resize(_sample()["img"], (80, 60), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(s["img"], ref)
    np.testing.assert_array_equal(s["gt_seg"], np.repeat(np.repeat(_sample()["gt_seg"], 2, 0), 2, 1))


def _strip_sample():
    gt = np.ones((10, 20), np.int64)
    gt[:, 15:] = 2  # windows of width 10 at x = 8, 9, 10 hold the second class at 30..50 %
    return dict(img=np.zeros((10, 20, 3), np.uint8), gt_seg=gt)


def _ok(gt, ratio=0.75):
    _, counts = np.unique(gt[gt != 255], return_counts=True)
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def test_crop_cat_max_ratio_redraws():
    np.random.seed(1)
    capped = [_ok(RandomCropSeg((10, 10), 0.75)(_strip_sample())["gt_seg"]) for _ in range(300)]
    plain = [_ok(RandomCropSeg((10, 10), 1.0)(_strip_sample())["gt_seg"]) for _ in range(300)]
    assert np.mean(plain) < 0.45  # 3 of 11 windows qualify
    assert np.mean(capped) > 0.9  # 1 - (8/11)^11 = 0.97
    s = RandomCropSeg((64, 8))(_sample(30, 40))
    assert s["img"].shape == (30, 8, 3) and s["gt_seg"].shape == (30, 8) and s["meta"].img_shape == (30, 8)


def test_crop_ignores_the_ignore_index_in_the_ratio():
    gt = np.full((10, 20), 255, np.int64)
    gt[:, :10] = 1
    np.random.seed(0)
    out = RandomCropSeg((10, 10), 0.75)(dict(img=np.zeros((10, 20, 3), np.uint8), gt_seg=gt))
    assert out["gt_seg"].shape == (10, 10)  # never qualifies (one class): the 11th draw is kept, no error


def test_flip_moves_both_and_toggles_meta():
    s = _sample()
    img, gt = s["img"].copy(), s["gt_seg"].copy()
    out = RandomFlipSeg(prob=1.0)(s)
    np.testing.assert_array_equal(out["img"], img[:, ::-1])
    np.testing.assert_array_equal(out["gt_seg"], gt[:, ::-1])
    assert out["meta"].flip is True
    assert RandomFlipSeg(prob=0.0)(_sample())["meta"].flip is False


def _reference_distort(img, rs):
    """mmseg PhotoMetricDistortion, step by step with the same draws (RGB in, so the HSV conversions are RGB)."""
    def conv(x, alpha=1.0, beta=0.0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)
    if rs.randint(2):
        img = conv(img, beta=rs.uniform(-32, 32))
    mode = rs.randint(2)
    if mode == 1 and rs.randint(2):
        img = conv(img, alpha=rs.uniform(0.5, 1.5))
    if rs.randint(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = conv(hsv[..., 1], alpha=rs.uniform(0.5, 1.5))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rs.randint(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + rs.randint(-18, 18)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0 and rs.randint(2):
        img = conv(img, alpha=rs.uniform(0.5, 1.5))
    return img


@pytest.mark.parametrize("seed", range(6))
def test_photometric_distort_matches_mmseg_sequence(seed):
    img = _sample(seed=seed)["img"]
    np.random.seed(seed)
    out = SegPhotometricDistort()(dict(img=img.copy()))["img"]
    ref = _reference_distort(img.copy(), np.random.RandomState(seed))
    np.testing.assert_array_equal(out, ref)
    assert out.dtype == np.uint8


def test_brightness_step_formula():
    img = np.full((2, 2, 3), 250, np.uint8)
    np.random.seed(3)
    rs = np.random.RandomState(3)
    out = SegPhotometricDistort(contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0)(dict(img=img))["img"]
    beta = rs.uniform(-32, 32) if rs.randint(2) else 0.0
    assert (out == np.uint8(np.clip(250 + beta, 0, 255))).all()


def test_pad_and_suppress():
    s = PadSeg((40, 50))(_sample(30, 40))
    assert s["img"].shape == (40, 50, 3) and s["valid_shape"] == (30, 40)
    assert (s["gt_seg"][30:] == 255).all() and (s["img"][:, 40:] == 0).all()
    s = SuppressLabels([1, 3])(_sample())
    orig = _sample()["gt_seg"]
    np.testing.assert_array_equal(s["gt_seg"], np.where(np.isin(orig, [1, 3]), -1, orig))
    assert (SuppressLabels(all_classes=5)(_sample())["gt_seg"] == -1).all()
