"""Box helpers on ``(N, 4)`` float tensors.

Formats: ``xyxy`` (paperforge's convention: ``x2``/``y2`` are exclusive edges, so ``w = x2 - x1``), COCO ``xywh``
(top-left corner + size) and ``cxcywh`` (centre + size). Everything is plain torch, differentiable where it makes
sense, and uses :mod:`torchvision.ops` where it has the operation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.ops as tvops
from torch import Tensor

__all__ = [
    "box_xyxy_to_xywh",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_cxcywh_to_xyxy",
    "box_area",
    "box_iou",
    "box_ioa",
    "clip_boxes",
    "scale_boxes",
    "flip_boxes",
]


def _check(boxes: Tensor, name: str = "boxes") -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must be (N, 4), got {tuple(boxes.shape)}")


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``(N, 4)`` xyxy -> COCO xywh."""
    _check(boxes)
    return tvops.box_convert(boxes, "xyxy", "xywh")


def box_xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(N, 4)`` COCO xywh -> xyxy (``x2 = x + w``)."""
    _check(boxes)
    return tvops.box_convert(boxes, "xywh", "xyxy")


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(N, 4)`` xyxy -> centre x, centre y, width, height."""
    _check(boxes)
    return tvops.box_convert(boxes, "xyxy", "cxcywh")


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(N, 4)`` centre/size -> xyxy."""
    _check(boxes)
    return tvops.box_convert(boxes, "cxcywh", "xyxy")


def box_area(boxes: Tensor) -> Tensor:
    """``(N,)`` areas of xyxy boxes; inverted boxes count as 0 (torchvision would return a negative area)."""
    _check(boxes)
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def _intersection(a: Tensor, b: Tensor) -> Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU ``(N, M)`` of xyxy boxes ``a (N, 4)`` and ``b (M, 4)``; 0 where the union is empty."""
    _check(a, "a")
    _check(b, "b")
    inter = _intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def box_ioa(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over the area of the **first** set: ``(N, M)`` = ``|a_i ∩ b_j| / |a_i|``.

    Used for ignore regions (CrowdHuman: a detection inside an ignore box) and crowd matching. Boxes of ``a`` with
    zero area give 0.
    """
    _check(a, "a")
    _check(b, "b")
    inter = _intersection(a, b)
    area_a = box_area(a)[:, None]
    return torch.where(area_a > 0, inter / area_a.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def clip_boxes(boxes: Tensor, shape: Sequence[int]) -> Tensor:
    """Clip xyxy boxes to an image of ``shape = (H, W)``: x to ``[0, W]``, y to ``[0, H]`` (exclusive edges)."""
    _check(boxes)
    h, w = int(shape[0]), int(shape[1])
    return tvops.clip_boxes_to_image(boxes, (h, w))


def scale_boxes(boxes: Tensor, scale_factor: Sequence[float]) -> Tensor:
    """Multiply xyxy boxes by ``scale_factor = (sx, sy)``.

    ``ImageMeta.scale_factor`` maps original to resized coordinates, so network-input boxes go back to the original
    image with ``scale_boxes(boxes, (1 / sx, 1 / sy))``.
    """
    _check(boxes)
    sx, sy = float(scale_factor[0]), float(scale_factor[1])
    return boxes * boxes.new_tensor([sx, sy, sx, sy])


def flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Mirror xyxy boxes horizontally in an image ``width`` pixels wide (``x -> width - x``)."""
    _check(boxes)
    out = boxes.clone()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out
