"""Anchor (prior) boxes of YOLACT (Sec. 3.3 / 4 of the paper; the official ``make_priors``).

Anchors are ``(cx, cy, w, h)`` relative to the image (0-1). On a level with an ``H x W`` grid the centre of cell
``(y, x)`` is ``((x + 0.5) / W, (y + 0.5) / H)``; for pixel scale ``s`` and aspect ratio ``r`` the size is
``w = s * sqrt(r) / max_size``, ``h = s / sqrt(r) / max_size``. Sizes are relative to ``max_size`` (550), not to the
actual input, exactly as the original. Order: level, row ``y``, column ``x``, scale, ratio.

``square=True`` reproduces the official YOLACT quirk (``use_square_anchors``, "backward compatibility with a bug")
that sets ``h = w``: the three "ratios" become squares of side ``s * sqrt(r)`` (17/24/34 px for s = 24). The released
YOLACT weights were trained that way; YOLACT++ uses real rectangles and three scales ``s * 2**(j/3)`` per level.

:func:`cached_anchors` keeps the anchors of the last few input shapes (an LRU of ``ANCHOR_CACHE_SIZE`` entries):
a fixed training size hits every time, while inference on images of ever new sizes cannot grow memory.
"""

from __future__ import annotations

import functools
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


ANCHOR_CACHE_SIZE = 8  # input shapes whose anchors are kept (per process, all models together)


def cached_anchors(
    feature_shapes: Sequence[tuple[int, int]],
    scales: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float],
    max_size: int,
    square: bool,
    device: torch.device | str,
) -> Tensor:
    """:func:`make_anchors` through a bounded LRU cache (the same arguments); the result is shared: do not modify it
    in place."""
    key_shapes = tuple((int(h), int(w)) for h, w in feature_shapes)
    key_scales = tuple(tuple(float(s) for s in level) for level in scales)
    return _cached(key_shapes, key_scales, tuple(float(r) for r in aspect_ratios), int(max_size), bool(square),
                   torch.device(device))


@functools.lru_cache(maxsize=ANCHOR_CACHE_SIZE)
def _cached(feature_shapes, scales, aspect_ratios, max_size, square, device) -> Tensor:
    return make_anchors(feature_shapes, scales, aspect_ratios, max_size, square, device)
