"""Semantic-segmentation items: the per-image record, packing of a pipeline's output and batching.

A pipeline sample (``forge.data.transforms.semseg``) is a dict with

``img``        ``(H, W, 3)`` RGB pixel values, uint8 (float32 after a float step), never normalised;
``gt_seg``     ``(H, W)`` int64 class indices in the coordinates of ``img``: ``0..C-1``, ``ignore_index`` (255)
               and, after :class:`~forge.data.transforms.semseg.SuppressLabels`, ``-1`` = "a class to be labelled
               by someone else" (MaskCLIP+'s unlabelled pixels);
``ori_gt_seg`` ``(H0, W0)`` int64 labels at the original resolution, untouched by transforms (evaluation compares
               predictions resized back to the original image, as mmsegmentation does);
``meta``       :class:`~forge.data.structures.ImageMeta`;
``valid_shape`` optional ``(h, w)`` of the image before a bottom/right pad (:class:`~...semseg.PadSeg`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from forge.data.structures import ImageMeta

__all__ = ["SegSample", "pack_seg_sample", "collate_semseg", "IGNORE_INDEX"]

IGNORE_INDEX = 255


@dataclass
class SegSample:
    """One image of a semantic-segmentation batch.

    Attributes:
        meta: image meta data (``img_shape`` = unpadded input size, ``ori_shape`` = size on disk).
        gt_sem_seg: ``(H, W)`` int64 labels at the network-input size (padding = 255), or None.
        ori_gt_sem_seg: ``(H0, W0)`` int64 labels at the original size, or None (no annotation).
    """

    meta: ImageMeta
    gt_sem_seg: Tensor | None = None
    ori_gt_sem_seg: Tensor | None = None

    def to(self, device: torch.device | str) -> SegSample:
        move = (lambda t: None if t is None else t.to(device))
        return replace(self, gt_sem_seg=move(self.gt_sem_seg), ori_gt_sem_seg=move(self.ori_gt_sem_seg))


def pack_seg_sample(sample: dict) -> dict:
    """Pipeline output -> ``dict(inputs=Tensor(3, H, W), data_samples=SegSample)`` (pixel values, dtype kept)."""
    img = sample["img"]
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.dtype not in (np.uint8, np.float32):
        raise TypeError(f"pack_seg_sample: sample['img'] must be an (H, W, C) uint8/float32 ndarray, got {type(img)}")
    h, w = img.shape[:2]
    meta: ImageMeta = sample["meta"]
    meta.img_shape = tuple(sample.get("valid_shape", (h, w)))
    meta.pad_shape = (h, w)
    gt = sample.get("gt_seg")
    if gt is not None and gt.shape != (h, w):
        raise ValueError(f"{meta.file_name}: label map {gt.shape} does not match the image {(h, w)} after the pipeline")
    ori = sample.get("ori_gt_seg")
    inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    to_t = (lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)))
    return dict(inputs=inputs, data_samples=SegSample(meta=meta, gt_sem_seg=to_t(gt), ori_gt_sem_seg=to_t(ori)))


def collate_semseg(batch: Sequence[dict], pad_value: float = 0.0) -> dict:
    """Stack items of different sizes: images padded bottom/right with ``pad_value`` to the batch's largest size
    (the model's preprocessor then sets the padding to 0 after normalising, from ``meta.img_shape``), labels with
    255; ``meta.pad_shape`` becomes the batch size.

    Returns:
        ``dict(inputs=Tensor(B, 3, H, W), data_samples=list[SegSample])`` (uint8 when every image is).
    """
    if not batch:
        raise ValueError("collate_semseg: empty batch")
    images = [item["inputs"] for item in batch]
    max_h = max(im.shape[1] for im in images)
    max_w = max(im.shape[2] for im in images)
    dtype = torch.uint8 if all(im.dtype == torch.uint8 for im in images) else torch.float32
    inputs = images[0].new_full((len(images), images[0].shape[0], max_h, max_w), pad_value, dtype=dtype)
    samples = []
    for i, item in enumerate(batch):
        im = images[i]
        inputs[i, :, : im.shape[1], : im.shape[2]] = im
        s: SegSample = item["data_samples"]
        gt = s.gt_sem_seg
        if gt is not None and tuple(gt.shape) != (max_h, max_w):
            gt = F.pad(gt, (0, max_w - gt.shape[1], 0, max_h - gt.shape[0]), value=IGNORE_INDEX)
        samples.append(replace(s, meta=replace(s.meta, pad_shape=(max_h, max_w)), gt_sem_seg=gt))
    return dict(inputs=inputs, data_samples=samples)
