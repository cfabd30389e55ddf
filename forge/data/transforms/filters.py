"""Instance filters."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forge.data.class_names import class_indices
from forge.ops.boxes import box_xyxy_to_xywh

from .base import Sample, select

__all__ = ["FilterSmallBoxes", "FilterSmallMasks", "KeepClasses"]


class FilterSmallBoxes:
    """Drop instances whose box is not wider than ``min_width`` and taller than ``min_height`` pixels.

    ``min_width`` has no default: the threshold is the paper's. YOLACT keeps ``w > discard_box_width`` and
    ``h > discard_box_height`` right after its resize (config values ``4 / 550``, meant as 4 px at 550); it compares
    them with boxes in *pixels* at that point, so it effectively only drops boxes under 0.0073 px (YOLACT's COCO
    pipeline, ``pipeline/yolact_ssd.yaml``, reproduces that with ``min_width = 4 / 550``). Crowd instances are
    filtered too, as in the original.
    """

    def __init__(self, min_width: float, min_height: float | None = None) -> None:
        self.min_width = float(min_width)
        self.min_height = float(min_width if min_height is None else min_height)
        if self.min_width < 0 or self.min_height < 0:
            raise ValueError(f"FilterSmallBoxes: sizes must be >= 0, got {self.min_width}, {self.min_height}")

    def __call__(self, sample: Sample) -> Sample:
        boxes = sample["gt"].boxes
        if boxes.shape[0] == 0:
            return sample
        wh = box_xyxy_to_xywh(boxes)[:, 2:]
        keep = (wh[:, 0] > self.min_width) & (wh[:, 1] > self.min_height)
        if not bool(keep.all()):
            select(sample, keep)
        return sample

    def __repr__(self) -> str:
        return f"FilterSmallBoxes(min_width={self.min_width}, min_height={self.min_height})"


class FilterSmallMasks:
    """Drop instances whose mask has fewer than ``min_area`` pixels at this point of the pipeline (box-only data
    passes unchanged). ``min_area`` is the paper's (OV-SAM: 32 after its resize and crop)."""

    def __init__(self, min_area: int) -> None:
        if min_area < 0:
            raise ValueError(f"FilterSmallMasks: min_area must be >= 0, got {min_area}")
        self.min_area = int(min_area)

    def __call__(self, sample: Sample) -> Sample:
        masks = sample["gt"].masks
        if masks is None or masks.shape[0] == 0:
            return sample
        keep = masks.flatten(1).sum(1) >= self.min_area
        if not bool(keep.all()):
            select(sample, keep)
        return sample

    def __repr__(self) -> str:
        return f"FilterSmallMasks(min_area={self.min_area})"


class KeepClasses:
    """Keep only the instances of some classes (an open-vocabulary split's base classes at training time).

    Args:
        keep: class indices, or names looked up in ``classes``.
        classes: the dataset's class names in label order (needed for names).
    """

    def __init__(self, keep: Sequence[int | str], classes: Sequence[str] | None = None) -> None:
        names = list(classes or [])
        idx = class_indices(keep, names, lambda c: f"KeepClasses: class {c!r} is not in classes {names[:8]}...")
        if not idx:
            raise ValueError("KeepClasses: no class to keep")
        self.keep = torch.tensor(sorted(set(idx)), dtype=torch.long)

    def __call__(self, sample: Sample) -> Sample:
        labels = sample["gt"].labels
        if labels.shape[0] == 0:
            return sample
        keep = torch.isin(labels.long(), self.keep)
        if not bool(keep.all()):
            select(sample, keep)
        return sample

    def __repr__(self) -> str:
        return f"KeepClasses(keep={self.keep.tolist()})"
