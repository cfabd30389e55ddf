"""Large-scale jitter for instance data: a random keep-ratio resize, then an instance-aware random crop.

The two steps follow mmcv's ``RandomResize(scale=(S, S), ratio_range=(lo, hi), keep_ratio=True)`` and mmdet's
``RandomCrop(crop_size=(S, S), crop_type='absolute', recompute_bbox=True, allow_negative_crop=True)``, the
large-scale-jitter pipeline of the LSJ recipes (e.g. OV-SAM's CLIP2SAM training, ``docs/ovsam.md``):

* :class:`RandomResize`: ``r ~ U[lo, hi)``, target ``T = int(S * r)``; the image is scaled by ``T / max(h, w)`` (the
  keep-ratio rule of a square target) to ``int(w * f + 0.5) x int(h * f + 0.5)``, boxes and masks with it;
* :class:`RandomCrop`: a window of ``min(S, h) x min(S, w)`` at an offset uniform over the margin; boxes shifted
  and clipped to the window, instances whose clipped box is empty dropped, masks cropped and (with masks) every
  box recomputed as its mask's tight box. An instance whose box overlaps the window but whose mask does not keeps
  an empty mask and a zero box, as mmdet leaves it: a mask-area filter after the crop
  (:class:`~forge.data.transforms.FilterSmallMasks`) removes it. A crop without instances is kept.

Training transforms: after a crop ``meta.scale_factor`` no longer maps original to input coordinates (the offset
is not recorded), so evaluation pipelines use :class:`~forge.data.transforms.Resize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from forge.ops.masks import masks_to_boxes

from .base import Sample, map_boxes, rand, select, set_masks
from .geometric import resize_sample

__all__ = ["RandomResize", "RandomCrop"]


class RandomResize:
    """Keep-ratio resize of the longer side to ``int(scale * r)``, ``r ~ U[ratio_range)`` (module docstring).

    ``meta.scale_factor`` and ``meta.img_shape`` follow, as in :class:`~forge.data.transforms.Resize`; boxes are
    scaled (and, with masks, recomputed as the resized masks' tight boxes when ``recompute_boxes``).
    """

    def __init__(self, scale: int, ratio_range: Sequence[float], recompute_boxes: bool = True) -> None:
        lo, hi = (float(v) for v in ratio_range)
        if int(scale) <= 0 or not 0 < lo <= hi:
            raise ValueError(f"RandomResize: need scale > 0 and 0 < ratio_range[0] <= ratio_range[1], got "
                             f"scale={scale!r}, ratio_range={list(ratio_range)!r}")
        self.scale, self.ratio_range, self.recompute_boxes = int(scale), (lo, hi), bool(recompute_boxes)

    def target_size(self, h: int, w: int, ratio: float) -> tuple[int, int]:
        """``(H', W')`` for an ``h x w`` image at jitter ratio ``ratio``."""
        f = int(self.scale * ratio) / max(h, w)
        return max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))

    def __call__(self, sample: Sample) -> Sample:
        lo, hi = self.ratio_range
        ratio = rand() * (hi - lo) + lo
        h, w = sample["img"].shape[:2]
        new_size = self.target_size(h, w, ratio)
        if new_size == (h, w):
            return sample
        return resize_sample(sample, new_size, self.recompute_boxes)

    def __repr__(self) -> str:
        return f"RandomResize(scale={self.scale}, ratio_range={self.ratio_range})"


class RandomCrop:
    """A ``min(size, h) x min(size, w)`` window at a random offset; instance-aware (module docstring)."""

    def __init__(self, size: int, recompute_boxes: bool = True) -> None:
        if int(size) <= 0:
            raise ValueError(f"RandomCrop: size must be positive, got {size!r}")
        self.size, self.recompute_boxes = int(size), bool(recompute_boxes)

    def __call__(self, sample: Sample) -> Sample:
        img = sample["img"]
        h, w = img.shape[:2]
        ch, cw = min(self.size, h), min(self.size, w)
        y0 = int(np.random.randint(0, h - ch + 1))
        x0 = int(np.random.randint(0, w - cw + 1))
        if (ch, cw) == (h, w):
            return sample
        sample["img"] = np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw])
        shift = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
        hi = torch.tensor([cw, ch, cw, ch], dtype=torch.float32)

        def window(b: torch.Tensor) -> torch.Tensor:
            return torch.minimum((b.float() - shift).clamp_min(0), hi)

        map_boxes(sample, window)
        boxes = sample["gt"].boxes
        select(sample, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        gt = sample["gt"]
        if gt.masks is not None:
            set_masks(sample, gt.masks[:, y0:y0 + ch, x0:x0 + cw].contiguous())
            gt = sample["gt"]
            if self.recompute_boxes and len(gt):
                sample["gt"] = replace(gt, boxes=masks_to_boxes(gt.masks))
        meta = sample.get("meta")
        if meta is not None:
            sample["meta"] = replace(meta, img_shape=(ch, cw), pad_shape=(ch, cw))
        return sample

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size})"
