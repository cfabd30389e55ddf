"""Tile images into one picture (for logging a handful of predictions)."""

from __future__ import annotations

import math

import numpy as np


def make_grid(images: list[np.ndarray], cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile RGB uint8 images ``(H_i, W_i, 3)`` row-major on a white canvas; cells take the largest size."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + im.shape[0], x : x + im.shape[1]] = im
    return canvas
