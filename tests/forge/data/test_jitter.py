"""Large-scale jitter (RandomResize + RandomCrop) against a slow, obvious statement of mmcv's / mmdet's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forge.data import transforms as T
from forge.ops.masks import masks_to_boxes

from .test_transforms import assert_aligned, coord_sample, shapes_sample


def reference_crop(sample: dict, size: int, y0: int, x0: int) -> dict:
    """mmdet RandomCrop(crop_type='absolute', recompute_bbox=True, allow_negative_crop=True), one loop per box."""
    img, gt = sample["img"], sample["gt"]
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    keep, boxes, masks = [], [], []
    for i in range(len(gt)):
        x1, y1, x2, y2 = gt.boxes[i].tolist()
        x1, x2 = [min(max(v - x0, 0), cw) for v in (x1, x2)]
        y1, y2 = [min(max(v - y0, 0), ch) for v in (y1, y2)]
        if x2 > x1 and y2 > y1:  # mmdet's is_inside on the clipped box
            keep.append(i)
            m = gt.masks[i].numpy()[y0:y0 + ch, x0:x0 + cw]
            masks.append(m)
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    return dict(img=img[y0:y0 + ch, x0:x0 + cw], keep=keep, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                masks=np.array(masks, bool).reshape(-1, ch, cw))


@pytest.mark.parametrize("seed", range(8))
def test_crop_equals_the_slow_rule(seed):
    sample = shapes_sample(seed, size=96)
    np.random.seed(seed)
    y0, x0 = int(np.random.randint(0, 96 - 50 + 1)), int(np.random.randint(0, 96 - 50 + 1))
    want = reference_crop(sample, 50, y0, x0)
    ids = [int(sample["gt"].ann_ids[i]) for i in want["keep"]]
    np.random.seed(seed)
    out = T.RandomCrop(50)(sample)  # transforms update the sample dict in place
    assert np.array_equal(out["img"], want["img"])
    assert out["gt"].ann_ids.tolist() == ids
    assert np.array_equal(out["gt"].masks.numpy(), want["masks"])
    assert np.array_equal(out["gt"].boxes.numpy(), want["boxes"])
    assert out["meta"].img_shape == (50, 50)


def test_crop_geometry_on_a_coordinate_image():
    # pixel (y, x) holds (x, y): after the crop, pixel (0, 0) tells the offset; a box outside the window is dropped,
    # one crossing its edge is clipped to it
    s = coord_sample(60, 80, boxes=((0, 0, 10, 10), (70, 50, 80, 60), (30, 20, 75, 40)))
    torch.manual_seed(0)
    for seed in range(20):
        np.random.seed(seed)
        out = T.RandomCrop(40)({**s})
        x0, y0 = int(out["img"][0, 0, 0]), int(out["img"][0, 0, 1])
        assert out["img"].shape == (40, 40, 3) and 0 <= x0 <= 40 and 0 <= y0 <= 20
        want = reference_crop(s, 40, y0, x0)
        assert out["gt"].ann_ids.tolist() == want["keep"]
        assert np.array_equal(out["gt"].boxes.numpy(), want["boxes"])


def test_crop_larger_than_the_image_leaves_it_and_keeps_empty_crops():
    s = coord_sample(30, 20)
    out = T.RandomCrop(64)(s)
    assert out["img"].shape == (30, 20, 3) and len(out["gt"]) == 1
    # a window that misses every instance is kept, with no instances (allow_negative_crop)
    s = coord_sample(100, 100, boxes=((70, 70, 80, 80),))
    kept = []
    for seed in range(30):
        np.random.seed(seed)
        kept.append(len(T.RandomCrop(50)({**s})["gt"]))
    assert 0 in kept and 1 in kept


@pytest.mark.parametrize("h,w,ratio", [(480, 640, 0.9), (640, 427, 1.37), (100, 100, 2.0), (333, 500, 0.1)])
def test_resize_size_follows_the_keep_ratio_rule(h, w, ratio):
    t = T.RandomResize(1024, (0.1, 2.0))
    target = int(1024 * ratio)
    f = min(target / max(h, w), target / min(h, w))  # mmcv rescale_size with a square (target, target) scale
    assert t.target_size(h, w, ratio) == (int(h * f + 0.5), int(w * f + 0.5))


@pytest.mark.parametrize("seed", range(6))
def test_resize_then_crop_keeps_boxes_on_masks_and_ratio_in_range(seed):
    np.random.seed(seed)
    s = shapes_sample(seed, size=96)
    out = T.RandomResize(64, (0.9, 2.0))(s)
    long_side = max(out["img"].shape[:2])
    assert int(64 * 0.9) <= long_side <= int(64 * 2.0)
    sx, sy = out["meta"].scale_factor
    assert sx == pytest.approx(out["img"].shape[1] / 96) and sy == pytest.approx(out["img"].shape[0] / 96)
    assert_aligned(out)
    out = T.RandomCrop(64)(out)
    assert max(out["img"].shape[:2]) <= 64
    nonempty = out["gt"].masks.flatten(1).any(1)
    assert torch.equal(out["gt"].boxes[nonempty], masks_to_boxes(out["gt"].masks[nonempty]))
    assert (out["gt"].boxes[~nonempty] == 0).all()


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="ratio_range"):
        T.RandomResize(1024, (2.0, 0.9))
    with pytest.raises(ValueError, match="size must be positive"):
        T.RandomCrop(0)
