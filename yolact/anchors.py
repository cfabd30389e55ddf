"""Anchor (prior) boxes of YOLACT (Sec. 3.3 / 4 of the paper; the official ``make_priors``).

Anchors are ``(cx, cy, w, h)`` relative to the image (0-1). On a level with an ``H x W`` grid the centre of cell
``(y, x)`` is ``((x + 0.5) / W, (y + 0.5) / H)``; for pixel scale ``s`` and aspect ratio ``r`` the size is
``w = s * sqrt(r) / max_size``, ``h = s / sqrt(r) / max_size``. Sizes are relative to ``max_size`` (550), not to the
actual input, exactly as the original. Order: level, row ``y``, column ``x``, scale, ratio.

``square=True`` reproduces the official YOLACT quirk (``use_square_anchors``, "backward compatibility with a bug")
that sets ``h = w``: the three "ratios" become squares of side ``s * sqrt(r)`` (17/24/34 px for s = 24). The released
YOLACT weights were trained that way; YOLACT++ uses real rectangles and three scales ``s * 2**(j/3)`` per level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def level_scales(base_scales: Sequence[float], scales_per_octave: int = 1) -> list[list[float]]:
    """Per-level pixel scales: ``[s * 2**(j / n) for j in range(n)]`` for each base scale ``s``."""
    return [[s * 2 ** (j / scales_per_octave) for j in range(scales_per_octave)] for s in base_scales]


def make_anchors(
    feature_shapes: Sequence[tuple[int, int]],
    scales: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0),
    max_size: int = 550,
    square: bool = False,
    device: torch.device | str = "cpu",
) -> Tensor:
    """All anchors of all levels.

    Args:
        feature_shapes: ``(H_l, W_l)`` per level (P3..P7).
        scales: pixel scales per level (one list per level).
        aspect_ratios: ``w / h`` ratios.
        max_size: the size pixel scales are relative to.
        square: the YOLACT square-anchor quirk (``h = w``).
        device: output device.

    Returns:
        ``(A, 4)`` float32 ``(cx, cy, w, h)``, ``A = sum_l H_l W_l * len(scales[l]) * len(aspect_ratios)``.
    """
    if len(feature_shapes) != len(scales):
        raise ValueError(f"make_anchors: {len(feature_shapes)} levels but {len(scales)} scale lists")
    out = []
    for (h, w), level in zip(feature_shapes, scales):
        sizes = []
        for s in level:
            for r in aspect_ratios:
                sw = s * math.sqrt(r) / max_size
                sh = sw if square else s / math.sqrt(r) / max_size
                sizes.append((sw, sh))
        wh = torch.tensor(sizes, dtype=torch.float64)  # (a, 2)
        cy = (torch.arange(h, dtype=torch.float64) + 0.5) / h
        cx = (torch.arange(w, dtype=torch.float64) + 0.5) / w
        cyy, cxx = torch.meshgrid(cy, cx, indexing="ij")
        centers = torch.stack([cxx, cyy], -1).reshape(-1, 1, 2).expand(-1, wh.shape[0], 2)
        out.append(torch.cat([centers, wh[None].expand(h * w, -1, -1)], -1).reshape(-1, 4))
    return torch.cat(out).float().to(device)
