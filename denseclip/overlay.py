"""Colour overlay of a semantic label map with a legend (``forge-infer denseclip``, the demo figure)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from forge.vis.draw import PALETTE


def class_colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 RGB: forge's 20-colour palette, then golden-ratio hues (no repeats for big label sets)."""
    cols = [PALETTE[i] for i in range(min(n, len(PALETTE)))]
    for i in range(len(cols), n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.55 + 0.45 * ((i // 7) % 2), 0.95 - 0.3 * ((i // 3) % 2))
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(cols, dtype=np.uint8).reshape(n, 3)


def draw_segmentation(image: np.ndarray, labels: np.ndarray, class_names: Sequence[str], alpha: float = 0.5,
                      legend: bool = True) -> np.ndarray:
    """Blend class colours over the image and append a legend below it.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` int class indices in ``[0, C)``.
        class_names: ``C`` names (the legend lists those present in ``labels``, with their pixel share).
    Returns:
        ``(H + legend height, W, 3)`` uint8 RGB.
    """
    if image.shape[:2] != labels.shape:
        raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
    n = len(class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"labels outside [0, {n})")
    colors = class_colors(n)
    blended = (image.astype(np.float32) * (1 - alpha) + colors[labels].astype(np.float32) * alpha)
    out = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    if not legend:
        return out
    counts = np.bincount(labels.ravel(), minlength=n)
    present = [c for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    font = ImageFont.load_default()
    row, sw, pad = 14, 10, 4
    entries = [f"{class_names[c]} {100.0 * counts[c] / labels.size:.1f}%" for c in present]
    width = out.shape[1]
    # lay the entries out left to right, wrapping at the image width
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    places, x, y = [], pad, pad
    for text in entries:
        w = sw + 3 + int(probe.textlength(text, font=font)) + 2 * pad
        if x > pad and x + w > width:
            x, y = pad, y + row
        places.append((x, y))
        x += w
    strip = Image.new("RGB", (width, y + row + pad), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for (x, y), c, text in zip(places, present, entries, strict=True):
        draw.rectangle([x, y + 2, x + sw, y + 2 + sw], fill=tuple(int(v) for v in colors[c]), outline=(0, 0, 0))
        draw.text((x + sw + 3, y), text, fill=(0, 0, 0), font=font)
    return np.concatenate([out, np.asarray(strip)], axis=0)
