"""Horizontal flip and resizing of image, boxes and masks together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from forge.ops.boxes import flip_boxes, scale_boxes
from forge.ops.masks import masks_to_boxes, resize_masks

from .base import Sample, check_image, coin, map_boxes, set_masks

__all__ = ["RandomMirror", "Resize", "resize_image", "resize_sample"]


class RandomMirror:
    """Horizontal flip with probability ``prob``: ``x1' = W - x2``, ``x2' = W - x1``; toggles ``meta.flip``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, sample: Sample) -> Sample:
        if not coin(self.prob):
            return sample
        img = sample["img"]
        w = img.shape[1]
        sample["img"] = np.ascontiguousarray(img[:, ::-1])
        masks = sample["gt"].masks
        if masks is not None:
            set_masks(sample, masks.flip(-1))
        map_boxes(sample, lambda b: flip_boxes(b, w))
        meta = sample.get("meta")
        if meta is not None:
            sample["meta"] = replace(meta, flip=not meta.flip)
        return sample

    def __repr__(self) -> str:
        return f"RandomMirror(prob={self.prob})"


def resize_image(img: np.ndarray, size: tuple[int, int], keep_float: bool = False) -> np.ndarray:
    """Bilinear resize of ``(H, W, C)`` to ``size = (H', W')`` with half-pixel centres (as OpenCV ``INTER_LINEAR``).

    The interpolation runs in float32. A uint8 image comes back as uint8 rounded to the nearest value (as OpenCV
    and mmcv return it) unless ``keep_float``; a float32 image comes back as float32. Same size: returned as is.
    """
    check_image(img, "resize_image")
    if img.shape[:2] == tuple(size):
        return img
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).contiguous().numpy()
    if img.dtype == np.uint8 and not keep_float:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out


def resize_sample(sample: Sample, size: tuple[int, int], recompute_boxes: bool = True,
                  keep_float: bool = False) -> Sample:
    """Resize a sample's image, masks and boxes to ``size = (H', W')`` (the rules of :class:`Resize`): image by
    :func:`resize_image`, masks bilinear ``> 0.5``, boxes scaled (or refitted to the resized masks when
    ``recompute_boxes``), ``meta.scale_factor`` multiplied by the same factors, ``meta.img_shape`` set."""
    img = sample["img"]
    h, w = img.shape[:2]
    new_h, new_w = size
    sample["img"] = resize_image(img, (new_h, new_w), keep_float)
    sx, sy = new_w / w, new_h / h
    masks = sample["gt"].masks
    if masks is not None and (new_h, new_w) != (h, w):
        set_masks(sample, resize_masks(masks, (new_h, new_w)))
    map_boxes(sample, lambda b: scale_boxes(b, (sx, sy)))
    gt = sample["gt"]
    if recompute_boxes and gt.masks is not None and len(gt) and (new_h, new_w) != (h, w):
        sample["gt"] = replace(gt, boxes=masks_to_boxes(gt.masks))
    meta = sample.get("meta")
    if meta is not None:
        old = meta.scale_factor
        sample["meta"] = replace(
            meta, scale_factor=(old[0] * sx, old[1] * sy), img_shape=(new_h, new_w), pad_shape=(new_h, new_w)
        )
    return sample


class Resize:
    """Resize image, boxes and masks.

    Target size:

    * ``size=S`` (int) or ``(H, W)``, ``keep_ratio=False``: exactly ``S x S`` / ``H x W`` (aspect not kept);
    * ``keep_ratio=True``: the largest scale with ``h <= H`` and ``w <= W`` (``size=S`` means ``S x S``);
    * ``short_side`` (+ optional ``max_long_side``) instead of ``size``: shorter side to ``short_side`` unless the
      longer one would exceed ``max_long_side`` (Faster R-CNN/CrowdDet style, e.g. 800/1400).

    Image: bilinear, half-pixel centres (:func:`resize_image`; ``keep_float`` keeps the float32 result of a uint8
    image instead of rounding it, as YOLACT's evaluation transform resizes in float). Masks: bilinear then
    ``> 0.5``. Boxes: multiplied by ``(w'/w, h'/h)``. ``meta.scale_factor`` is multiplied by the same factors (for a
    resize-only pipeline it maps original to network-input coordinates) and ``meta.img_shape`` set.

    ``recompute_boxes`` (default True): when masks are present, each box becomes the tight box of its resized mask.
    Shrinking loses parts thinner than the sampling step (star tips), so scaled boxes can stick out of the mask by
    several pixels; YOLACT scales the boxes regardless (``recompute_boxes=False``). A mask that vanishes gets a
    zero box, which :class:`~forge.data.transforms.FilterSmallBoxes` then drops.
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        keep_ratio: bool = False,
        short_side: int | None = None,
        max_long_side: int | None = None,
        recompute_boxes: bool = True,
        keep_float: bool = False,
    ) -> None:
        self.recompute_boxes = recompute_boxes
        self.keep_float = bool(keep_float)
        if size is None and short_side is None:
            raise ValueError("Resize: give size or short_side")
        if size is not None and short_side is not None:
            raise ValueError("Resize: give either size or short_side, not both")
        if size is not None:
            hw = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
            if len(hw) != 2 or min(hw) <= 0:
                raise ValueError(f"Resize: size must be a positive int or (H, W), got {size!r}")
            self.size: tuple[int, int] | None = hw  # type: ignore[assignment]
        else:
            self.size = None
            if int(short_side) <= 0 or (max_long_side is not None and int(max_long_side) <= 0):
                raise ValueError(f"Resize: short_side/max_long_side must be positive, got {short_side}/{max_long_side}")
        self.keep_ratio = keep_ratio
        self.short_side = None if short_side is None else int(short_side)
        self.max_long_side = None if max_long_side is None else int(max_long_side)

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """``(H', W')`` for an input of ``(h, w)``."""
        if self.size is not None and not self.keep_ratio:
            return self.size
        if self.size is not None:
            scale = min(self.size[0] / h, self.size[1] / w)
        else:
            scale = self.short_side / min(h, w)
            if self.max_long_side is not None:
                scale = min(scale, self.max_long_side / max(h, w))
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))

    def __call__(self, sample: Sample) -> Sample:
        h, w = sample["img"].shape[:2]
        return resize_sample(sample, self.target_size(h, w), self.recompute_boxes, self.keep_float)

    def __repr__(self) -> str:
        if self.size is not None:
            return (f"Resize(size={self.size}, keep_ratio={self.keep_ratio}, recompute_boxes={self.recompute_boxes}, "
                    f"keep_float={self.keep_float})")
        return f"Resize(short_side={self.short_side}, max_long_side={self.max_long_side}, keep_float={self.keep_float})"
