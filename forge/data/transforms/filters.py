"""Instance filters."""

from __future__ import annotations

from forge.ops.boxes import box_xyxy_to_xywh

from .base import Sample, select

__all__ = ["FilterSmallBoxes"]


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
