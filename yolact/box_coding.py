"""SSD box coding with variances (Liu et al. 2016; YOLACT uses variances ``(0.1, 0.2)``).

``encode``: ``t_xy = (c_gt - c_a) / (0.1 * wh_a)``, ``t_wh = log(wh_gt / wh_a) / 0.2``; ``decode`` inverts it.
Boxes are relative (0-1); anchors are ``(cx, cy, w, h)``, ground truth and decoded boxes ``xyxy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

VARIANCES = (0.1, 0.2)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` centre-size -> corners."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(..., 4)`` corners -> centre-size."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def encode(matched: Tensor, anchors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """Regression targets.

    Args:
        matched: ``(A, 4)`` xyxy box assigned to each anchor.
        anchors: ``(A, 4)`` cxcywh.

    Returns:
        ``(A, 4)`` deltas ``(tx, ty, tw, th)``.
    """
    cxy = ((matched[:, :2] + matched[:, 2:]) / 2 - anchors[:, :2]) / (variances[0] * anchors[:, 2:])
    wh = torch.log((matched[:, 2:] - matched[:, :2]) / anchors[:, 2:]) / variances[1]
    return torch.cat([cxy, wh], 1)


def decode(deltas: Tensor, anchors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """Inverse of :func:`encode`: ``(..., A, 4)`` deltas and ``(A, 4)`` cxcywh anchors -> ``(..., A, 4)`` xyxy."""
    cxy = anchors[..., :2] + deltas[..., :2] * variances[0] * anchors[..., 2:]
    wh = anchors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1])
    xy1 = cxy - wh / 2
    return torch.cat([xy1, xy1 + wh], -1)
