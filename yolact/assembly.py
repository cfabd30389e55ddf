"""Mask assembly (YOLACT Sec. 3.4): ``M = sigmoid(P C^T)`` from prototypes and coefficients, then crop to a box.

Cropping zeroes everything outside the box at prototype resolution. Box edges are scaled to the prototype grid,
ordered, widened by ``padding`` cells and clamped to the grid; a cell ``(y, x)`` is kept when
``x1 <= x < x2`` and ``y1 <= y < y2`` (fractional edges, as the original).
"""

from __future__ import annotations

import torch
from torch import Tensor


def assemble_masks(prototypes: Tensor, coefs: Tensor) -> Tensor:
    """``(k, H, W)`` prototypes and ``(N, k)`` coefficients -> ``(N, H, W)`` soft masks in (0, 1)."""
    k, h, w = prototypes.shape
    return torch.sigmoid(coefs @ prototypes.reshape(k, h * w)).reshape(-1, h, w)


def crop_masks(masks: Tensor, boxes: Tensor, padding: int = 1) -> Tensor:
    """Zero mask cells outside their box.

    Args:
        masks: ``(N, H, W)``.
        boxes: ``(N, 4)`` relative xyxy (0-1).
        padding: cells added on each side (1 in the original, in training and at test time).

    Returns:
        ``(N, H, W)`` cropped masks.
    """
    n, h, w = masks.shape
    x1, x2 = _edges(boxes[:, 0], boxes[:, 2], w, padding)
    y1, y2 = _edges(boxes[:, 1], boxes[:, 3], h, padding)
    cols = torch.arange(w, device=masks.device, dtype=x1.dtype)[None, None, :]
    rows = torch.arange(h, device=masks.device, dtype=y1.dtype)[None, :, None]
    keep = ((cols >= x1[:, None, None]) & (cols < x2[:, None, None])
            & (rows >= y1[:, None, None]) & (rows < y2[:, None, None]))
    return masks * keep.to(masks.dtype)


def _edges(a: Tensor, b: Tensor, size: int, padding: int) -> tuple[Tensor, Tensor]:
    a, b = a * size, b * size
    lo = (torch.minimum(a, b) - padding).clamp(min=0)
    hi = (torch.maximum(a, b) + padding).clamp(max=size)
    return lo, hi
