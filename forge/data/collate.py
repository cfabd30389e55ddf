"""Batching of detection samples with a variable number of instances per image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from forge.data.structures import DetSample

__all__ = ["collate_detection"]


def collate_detection(batch: Sequence[dict], pad_value: float = 0.0, size_divisor: int = 1) -> dict:
    """Stack ``[dict(inputs=(3, H_i, W_i), data_samples=DetSample), ...]`` into one batch.

    Images of different sizes are padded at the bottom and right to the largest height and width in the batch
    (rounded up to a multiple of ``size_divisor``) with the pixel value ``pad_value``. Each sample's
    ``meta.pad_shape`` becomes the batch size and its GT masks are padded the same way, so masks always match
    ``inputs``; ``meta.img_shape`` keeps the unpadded size, so the model's data preprocessor
    (:class:`forge.models.ImagePreprocessor`) can give the padding its own value after normalising. Boxes are
    unaffected (padding is bottom-right). The instances are not stacked: each image keeps its own
    :class:`~forge.data.structures.Instances` (any number, including 0).

    Returns:
        ``dict(inputs=Tensor(B, 3, H, W), data_samples=list[DetSample])``; ``inputs`` is uint8 when every image is
        (pixel values, 4x less to pin and copy than float32), float32 otherwise.
    """
    if len(batch) == 0:
        raise ValueError("collate_detection: empty batch")
    for i, item in enumerate(batch):
        if not isinstance(item, dict) or "inputs" not in item or "data_samples" not in item:
            raise TypeError(f"collate_detection: item {i} must be dict(inputs=..., data_samples=...), got {type(item)}")
        if item["inputs"].ndim != 3:
            raise ValueError(f"collate_detection: item {i} inputs must be (C, H, W), got {tuple(item['inputs'].shape)}")
    images = [item["inputs"] for item in batch]
    channels = {img.shape[0] for img in images}
    if len(channels) != 1:
        raise ValueError(f"collate_detection: images have different channel counts {sorted(channels)}")
    max_h = max(img.shape[1] for img in images)
    max_w = max(img.shape[2] for img in images)
    if size_divisor > 1:
        max_h = -(-max_h // size_divisor) * size_divisor
        max_w = -(-max_w // size_divisor) * size_divisor
    dtype = torch.uint8 if all(img.dtype == torch.uint8 for img in images) else torch.float32
    if dtype == torch.uint8 and not (float(pad_value).is_integer() and 0 <= pad_value <= 255):
        dtype = torch.float32  # a fractional pad value needs float pixels
    same = all(img.shape[1] == max_h and img.shape[2] == max_w for img in images)
    if same:
        inputs = torch.stack([img.to(dtype) for img in images])
    else:
        inputs = images[0].new_full((len(images), images[0].shape[0], max_h, max_w), pad_value, dtype=dtype)
        for i, img in enumerate(images):
            inputs[i, :, : img.shape[1], : img.shape[2]] = img
    samples = []
    for item in batch:
        s: DetSample = item["data_samples"]
        gt = s.gt
        if gt is not None and gt.masks is not None and tuple(gt.masks.shape[-2:]) != (max_h, max_w):
            h, w = gt.masks.shape[-2:]
            gt = replace(gt, masks=F.pad(gt.masks, (0, max_w - w, 0, max_h - h), value=False))
        samples.append(DetSample(meta=replace(s.meta, pad_shape=(max_h, max_w)), gt=gt, pred=s.pred))
    return dict(inputs=inputs, data_samples=samples)
