"""Per-image structures shared by every detection and segmentation paper.

One sample travels through the pipeline as a :class:`DetSample`: the image meta data, the ground truth
(:class:`Instances`) and, after ``model(..., mode='predict')``, the prediction (:class:`Detections`).

Conventions (used everywhere in paperforge):

* boxes are ``xyxy`` in pixels, float32, ``(N, 4)``; ``x2``/``y2`` are exclusive edges (COCO ``xywh`` converts
  as ``x2 = x + w``);
* labels are contiguous ``int64`` class indices ``0..C-1`` (the dataset maps its category ids to them);
* masks are bitmaps ``(N, H, W)`` of ``bool`` at the size of the image they belong to, or COCO RLE dicts;
* ground truth lives in the coordinates of the (transformed) network input; predictions are returned in the
  coordinates of the **original** image (``ImageMeta.ori_shape``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if hasattr(value, "to") and hasattr(value, "__dataclass_fields__"):
        return value.to(device)
    return value


class _TensorFields:
    """Mixin: ``.to(device)`` and ``len()`` for dataclasses whose fields are tensors (or None)."""

    def to(self, device: torch.device | str):
        return replace(self, **{f.name: _to(getattr(self, f.name), device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.boxes.shape[0])  # type: ignore[attr-defined]


@dataclass
class ImageMeta:
    """Where an image came from and how it was transformed.

    Attributes:
        image_id: dataset image id (COCO ``image_id``; CrowdHuman ``ID`` strings are kept in ``file_name``).
        file_name: path of the image file, for error messages and drawing.
        ori_shape: ``(H, W)`` of the image on disk.
        img_shape: ``(H, W)`` after resizing, before padding.
        pad_shape: ``(H, W)`` of the network input (after padding).
        scale_factor: ``(sx, sy)`` mapping original to resized coordinates (``x_resized = x * sx``).
        flip: whether the image was flipped horizontally.
        extra: anything a dataset wants to carry (e.g. CrowdHuman ``ID``).
    """

    image_id: int
    file_name: str = ""
    ori_shape: tuple[int, int] = (0, 0)
    img_shape: tuple[int, int] = (0, 0)
    pad_shape: tuple[int, int] = (0, 0)
    scale_factor: tuple[float, float] = (1.0, 1.0)
    flip: bool = False
    extra: dict = field(default_factory=dict)

    def to(self, device: torch.device | str) -> ImageMeta:
        return self


@dataclass
class Instances(_TensorFields):
    """Ground-truth objects of one image.

    Attributes:
        boxes: ``(N, 4)`` float32 xyxy pixels.
        labels: ``(N,)`` int64 contiguous class indices.
        masks: ``(N, H, W)`` bool bitmaps at the image size, or None for box-only data.
        iscrowd: ``(N,)`` bool; crowd / ignore regions (COCO ``iscrowd``, CrowdHuman ``ignore``).
        ann_ids: ``(N,)`` int64 annotation ids, so errors can name the annotation at fault.
    """

    boxes: Tensor
    labels: Tensor
    masks: Tensor | None = None
    iscrowd: Tensor | None = None
    ann_ids: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"Instances.boxes must be (N, 4), got {tuple(self.boxes.shape)}")
        for name in ("labels", "iscrowd", "ann_ids"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"Instances.{name} has {value.shape[0]} entries for {n} boxes")
        if self.masks is not None and self.masks.shape[0] != n:
            raise ValueError(f"Instances.masks has {self.masks.shape[0]} masks for {n} boxes")
        if self.iscrowd is None:
            self.iscrowd = torch.zeros(n, dtype=torch.bool, device=self.boxes.device)

    @classmethod
    def empty(cls, height: int | None = None, width: int | None = None) -> Instances:
        masks = None if height is None else torch.zeros((0, height, width), dtype=torch.bool)
        return cls(
            boxes=torch.zeros((0, 4)),
            labels=torch.zeros(0, dtype=torch.long),
            masks=masks,
            ann_ids=torch.zeros(0, dtype=torch.long),
        )

    def __getitem__(self, index: Tensor | slice) -> Instances:
        def pick(v):
            return None if v is None else v[index]

        return Instances(
            boxes=self.boxes[index],
            labels=self.labels[index],
            masks=pick(self.masks),
            iscrowd=pick(self.iscrowd),
            ann_ids=pick(self.ann_ids),
        )


@dataclass
class Detections(_TensorFields):
    """Predicted objects of one image, in original-image coordinates.

    Attributes:
        boxes: ``(N, 4)`` float32 xyxy pixels.
        scores: ``(N,)`` float32 confidence (the box score).
        labels: ``(N,)`` int64 contiguous class indices.
        masks: ``(N, H, W)`` bool bitmaps at ``ori_shape``, a list of N COCO RLE dicts, or None.
        mask_scores: ``(N,)`` separate mask confidence (YOLACT++ re-scoring), or None to use ``scores``.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: Tensor | list | None = None
    mask_scores: Tensor | None = None

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=torch.zeros((0, 4)),
            scores=torch.zeros(0),
            labels=torch.zeros(0, dtype=torch.long),
        )

    def to(self, device: torch.device | str) -> Detections:
        masks = self.masks.to(device) if isinstance(self.masks, Tensor) else self.masks
        return replace(
            self,
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            masks=masks,
            mask_scores=None if self.mask_scores is None else self.mask_scores.to(device),
        )


@dataclass
class DetSample:
    """One image's meta data, ground truth and (after prediction) result."""

    meta: ImageMeta
    gt: Instances | None = None
    pred: Detections | None = None

    def to(self, device: torch.device | str) -> DetSample:
        return DetSample(
            meta=self.meta,
            gt=None if self.gt is None else self.gt.to(device),
            pred=None if self.pred is None else self.pred.to(device),
        )
