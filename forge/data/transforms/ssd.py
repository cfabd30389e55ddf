"""SSD's zoom-out (:class:`Expand`) and random crop (:class:`RandomSampleCrop`), as YOLACT trains with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from forge.data.structures import Instances
from forge.ops.boxes import box_iou, box_xyxy_to_cxcywh, clip_boxes
from forge.ops.masks import masks_to_boxes

from .base import Sample, check_image, coin, map_boxes, select, set_masks, uniform

__all__ = ["Expand", "RandomSampleCrop"]


class Expand:
    """Zoom out: place the image at a random position on a canvas ``ratio`` times larger, filled with ``fill``.

    As SSD's ``Expand``: applied with probability ``prob``, ``ratio ~ U(ratio_range)``, canvas
    ``int(H * ratio) x int(W * ratio)``, offset ``(int(left), int(top))`` with ``left ~ U(0, W * ratio - W)``.

    Args:
        fill: canvas colour in pixel space (RGB, ``[0, 255]``), one value per channel of the image. There is no
            default: SSD and YOLACT fill with their normalisation mean (YOLACT's pipeline config names it), so the
            colour belongs to the paper's pipeline. A uint8 image stays uint8 when ``fill`` is integral; otherwise
            the canvas is float32 so that the fill is exact.
        ratio_range: ``(low, high)`` with ``1 <= low <= high`` (SSD: 1..4).
        prob: probability of zooming out (SSD: 1/2).
    """

    def __init__(self, fill: Sequence[float], ratio_range: Sequence[float] = (1.0, 4.0), prob: float = 0.5) -> None:
        if len(ratio_range) != 2 or not 1.0 <= ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"Expand: ratio_range must be (low, high) with 1 <= low <= high, got {ratio_range}")
        self.fill = tuple(float(v) for v in fill)
        if not self.fill or not all(0.0 <= v <= 255.0 for v in self.fill):
            raise ValueError(f"Expand: fill must be pixel values in [0, 255] (RGB), got {list(fill)}")
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.prob = float(prob)

    def __call__(self, sample: Sample) -> Sample:
        if not coin(self.prob):
            return sample
        img = sample["img"]
        check_image(img, "Expand")
        h, w, c = img.shape
        if len(self.fill) not in (1, c):
            raise ValueError(f"Expand: {len(self.fill)} fill values for a {c}-channel image")
        ratio = uniform(*self.ratio_range)
        left = int(uniform(0.0, w * ratio - w))
        top = int(uniform(0.0, h * ratio - h))
        new_h, new_w = int(h * ratio), int(w * ratio)
        # int() truncation can make the canvas one pixel short of offset + size
        new_h, new_w = max(new_h, top + h), max(new_w, left + w)
        integral = all(v.is_integer() for v in self.fill)
        dtype = np.uint8 if img.dtype == np.uint8 and integral else np.float32
        canvas = np.empty((new_h, new_w, c), dtype=dtype)
        canvas[:] = np.asarray(self.fill, dtype=dtype)
        canvas[top : top + h, left : left + w] = img
        sample["img"] = canvas
        masks = sample["gt"].masks
        if masks is not None:
            big = torch.zeros((masks.shape[0], new_h, new_w), dtype=torch.bool)
            big[:, top : top + h, left : left + w] = masks
            set_masks(sample, big)
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        map_boxes(sample, lambda b: b + shift)
        return sample

    def __repr__(self) -> str:
        return f"Expand(fill={self.fill}, ratio_range={self.ratio_range}, prob={self.prob})"


class RandomSampleCrop:
    """SSD random crop.

    Each attempt picks a mode uniformly from ``min_ious`` (``None`` = keep the whole image; a number = a minimum-IoU
    mode; SSD's list is ``None, 0.1, 0.3, 0.7, 0.9, -inf``); up to ``max_trials`` (50) patches of size
    ``U(min_scale, 1) * (W, H)`` with aspect ``h / w`` in ``[1 / max_aspect, max_aspect]`` at ``int`` coordinates
    are tried. A patch is accepted when it overlaps some box with IoU at least the mode's threshold
    (``enforce_min_iou``) and at least one non-crowd box has its centre strictly inside; instances whose centre is
    inside are kept (crowd included), their boxes clipped to the patch, their masks cropped.

    Args:
        min_ious: the modes (``None`` = no crop).
        min_scale, max_aspect, max_trials: patch sampling as above.
        enforce_min_iou: apply the minimum-IoU test (SSD's intent). YOLACT's copy of the test is a no-op
            (``ssd.pytorch`` issue #68; YOLACT's author found that fixing it halved the mAP early in training), so
            YOLACT's pipeline sets ``False`` to reproduce that.
        recompute_boxes: after cropping, set each box to the tight box of its cropped mask (instances whose mask
            became empty are dropped). SSD/YOLACT only clip, which for non-convex objects leaves the box larger
            than the visible mask (``False`` reproduces that). Ignored for box-only samples.
        max_modes: mode draws before giving up and returning the sample unchanged.
    """

    def __init__(
        self,
        min_ious: Sequence[float | None] = (None, 0.1, 0.3, 0.7, 0.9, float("-inf")),
        min_scale: float = 0.3,
        max_aspect: float = 2.0,
        max_trials: int = 50,
        enforce_min_iou: bool = True,
        recompute_boxes: bool = True,
        max_modes: int = 100,
    ) -> None:
        if not 0 < min_scale <= 1:
            raise ValueError(f"RandomSampleCrop: min_scale must be in (0, 1], got {min_scale}")
        if max_aspect < 1:
            raise ValueError(f"RandomSampleCrop: max_aspect must be >= 1, got {max_aspect}")
        self.min_ious = tuple(None if v is None else float(v) for v in min_ious)
        if not self.min_ious:
            raise ValueError("RandomSampleCrop: min_ious must not be empty")
        self.min_scale = float(min_scale)
        self.max_aspect = float(max_aspect)
        self.max_trials = int(max_trials)
        self.enforce_min_iou = enforce_min_iou
        self.recompute_boxes = recompute_boxes
        self.max_modes = int(max_modes)

    def __call__(self, sample: Sample) -> Sample:
        gt: Instances = sample["gt"]
        crowd = gt.iscrowd.bool() if gt.iscrowd is not None else torch.zeros(len(gt), dtype=torch.bool)
        if len(gt) == 0 or bool(crowd.all()):
            return sample  # nothing to keep in a patch (the original would loop for ever here)
        h, w = sample["img"].shape[:2]
        boxes = gt.boxes.float()
        centres = box_xyxy_to_cxcywh(boxes)[:, :2]
        for _ in range(self.max_modes):
            mode = self.min_ious[int(np.random.randint(len(self.min_ious)))]
            if mode is None:
                return sample
            for _ in range(self.max_trials):
                pw = uniform(self.min_scale * w, w)
                ph = uniform(self.min_scale * h, h)
                if ph / pw < 1.0 / self.max_aspect or ph / pw > self.max_aspect:
                    continue
                left = uniform(0.0, w - pw)
                top = uniform(0.0, h - ph)
                rect = torch.tensor([int(left), int(top), int(left + pw), int(top + ph)], dtype=torch.float32)
                if rect[2] <= rect[0] or rect[3] <= rect[1]:
                    continue
                if self.enforce_min_iou and float(box_iou(boxes, rect[None]).max()) < mode:
                    continue
                inside = (
                    (rect[0] < centres[:, 0])
                    & (rect[1] < centres[:, 1])
                    & (rect[2] > centres[:, 0])
                    & (rect[3] > centres[:, 1])
                )
                if not bool((inside & ~crowd).any()):
                    continue
                return self._crop(sample, rect, inside)
        return sample

    def _crop(self, sample: Sample, rect: torch.Tensor, inside: torch.Tensor) -> Sample:
        x1, y1, x2, y2 = (int(v) for v in rect.tolist())
        sample["img"] = np.ascontiguousarray(sample["img"][y1:y2, x1:x2])
        select(sample, inside)
        masks = sample["gt"].masks
        if masks is not None:
            set_masks(sample, masks[:, y1:y2, x1:x2].contiguous())
        lt = rect[:2].repeat(2)
        # kept boxes have their centre inside the patch, so clipping after the shift equals SSD's clip-then-shift;
        # further boxes (CrowdHuman's visible boxes) that leave the patch become zero-size instead of inverted
        map_boxes(sample, lambda b: clip_boxes(b - lt, (y2 - y1, x2 - x1)))
        gt = sample["gt"]
        if self.recompute_boxes and gt.masks is not None and len(gt):
            nonempty = gt.masks.flatten(1).any(dim=1)
            sample["gt"] = replace(gt, boxes=masks_to_boxes(gt.masks))
            if not bool(nonempty.all()):
                select(sample, nonempty)
        return sample

    def __repr__(self) -> str:
        return (
            f"RandomSampleCrop(min_ious={self.min_ious}, min_scale={self.min_scale}, max_aspect={self.max_aspect}, "
            f"enforce_min_iou={self.enforce_min_iou}, recompute_boxes={self.recompute_boxes})"
        )
