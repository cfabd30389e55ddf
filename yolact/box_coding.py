"""SSD box coding with variances (Liu et al. 2016; YOLACT uses variances ``(0.1, 0.2)``).

``encode``: ``t_xy = (c_gt - c_a) / (0.1 * wh_a)``, ``t_wh = log(wh_gt / wh_a) / 0.2``; ``decode`` inverts it.
Boxes are relative (0-1); anchors are ``(cx, cy, w, h)``, ground truth and decoded boxes ``xyxy``. Box format
conversions are :mod:`forge.ops.boxes`' (re-exported here under the names the YOLACT code uses).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from forge.ops.boxes import box_cxcywh_to_xyxy as cxcywh_to_xyxy
from forge.ops.boxes import box_xyxy_to_cxcywh as xyxy_to_cxcywh

__all__ = ["VARIANCES", "cxcywh_to_xyxy", "decode", "encode", "xyxy_to_cxcywh"]

VARIANCES = (0.1, 0.2)


def encode(matched: Tensor, anchors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """Regression targets.

    Args:
        matched: ``(A, 4)`` xyxy box assigned to each anchor.
        anchors: ``(A, 4)`` cxcywh.

    Returns:
        ``(A, 4)`` deltas ``(tx, ty, tw, th)``.
    """
    gt = xyxy_to_cxcywh(matched)
    cxy = (gt[:, :2] - anchors[:, :2]) / (variances[0] * anchors[:, 2:])
    wh = torch.log(gt[:, 2:] / anchors[:, 2:]) / variances[1]
    return torch.cat([cxy, wh], 1)


def decode(deltas: Tensor, anchors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """Inverse of :func:`encode`: ``(..., A, 4)`` deltas and ``(A, 4)`` cxcywh anchors -> ``(..., A, 4)`` xyxy."""
    cxy = anchors[..., :2] + deltas[..., :2] * variances[0] * anchors[..., 2:]
    wh = anchors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1])
    return cxcywh_to_xyxy(torch.cat([cxy, wh], -1))
