"""collate_detection: variable instance counts, bottom-right padding, masks padded with the images."""

from __future__ import annotations

import pytest
import torch

from forge.data.collate import collate_detection
from forge.data.structures import DetSample, ImageMeta, Instances


def item(h: int, w: int, n: int, masks: bool = True, value: float = 1.0, dtype: torch.dtype = torch.float32) -> dict:
    boxes = torch.tensor([[1.0, 1.0, 3.0, 3.0]] * n).reshape(-1, 4)
    m = torch.ones((n, h, w), dtype=torch.bool) if masks else None
    gt = Instances(boxes=boxes, labels=torch.zeros(n, dtype=torch.long), masks=m, ann_ids=torch.arange(n))
    meta = ImageMeta(image_id=n, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))
    return dict(inputs=torch.full((3, h, w), value, dtype=dtype), data_samples=DetSample(meta=meta, gt=gt))


def test_same_size_stacks():
    batch = collate_detection([item(8, 10, 0), item(8, 10, 3), item(8, 10, 5)])
    assert batch["inputs"].shape == (3, 3, 8, 10) and batch["inputs"].dtype == torch.float32
    assert [len(s.gt) for s in batch["data_samples"]] == [0, 3, 5]
    assert all(s.meta.pad_shape == (8, 10) for s in batch["data_samples"])


def test_different_sizes_pad_bottom_right():
    batch = collate_detection([item(8, 10, 2, value=2.0), item(12, 6, 1, value=3.0), item(5, 5, 0)], pad_value=-1.0)
    x = batch["inputs"]
    assert x.shape == (3, 3, 12, 10)
    assert (x[0, :, :8, :10] == 2).all() and (x[0, :, 8:, :] == -1).all()
    assert (x[1, :, :, :6] == 3).all() and (x[1, :, :, 6:] == -1).all()
    samples = batch["data_samples"]
    assert [s.meta.pad_shape for s in samples] == [(12, 10)] * 3
    assert [s.meta.img_shape for s in samples] == [(8, 10), (12, 6), (5, 5)]
    m = samples[0].gt.masks
    assert m.shape == (2, 12, 10) and m.dtype == torch.bool and m[:, :8, :10].all() and not m[:, 8:].any()
    assert samples[2].gt.masks.shape == (0, 12, 10)
    assert torch.equal(samples[0].gt.boxes, torch.tensor([[1.0, 1.0, 3.0, 3.0]] * 2))


def test_size_divisor_and_box_only():
    batch = collate_detection([item(7, 9, 1, masks=False), item(5, 5, 2, masks=False)], size_divisor=8)
    assert batch["inputs"].shape == (2, 3, 8, 16)
    assert all(s.gt.masks is None for s in batch["data_samples"])


def test_bad_items_raise():
    with pytest.raises(ValueError):
        collate_detection([])
    with pytest.raises(TypeError):
        collate_detection([dict(inputs=torch.zeros(3, 2, 2))])


def test_pixel_dtype_is_kept():
    u8 = torch.uint8
    # uint8 pixel values stay uint8 (4x less to pin and copy); the model's data preprocessor casts and normalises
    same = collate_detection([item(4, 4, 1, value=7, dtype=u8), item(4, 4, 0, value=9, dtype=u8)])
    assert same["inputs"].dtype == u8 and same["inputs"][1].eq(9).all()
    padded = collate_detection([item(4, 4, 1, value=7, dtype=u8), item(2, 3, 0, value=9, dtype=u8)])
    assert padded["inputs"].dtype == u8 and padded["inputs"][1, :, 2:].eq(0).all()
    mixed = collate_detection([item(4, 4, 1, value=7, dtype=u8), item(4, 4, 0, value=2.5)])
    assert mixed["inputs"].dtype == torch.float32 and mixed["inputs"][1].eq(2.5).all()
    frac = collate_detection([item(4, 4, 1, value=7, dtype=u8), item(2, 2, 0, value=1, dtype=u8)], pad_value=0.5)
    assert frac["inputs"].dtype == torch.float32 and frac["inputs"][1, :, 3, 3].eq(0.5).all()
