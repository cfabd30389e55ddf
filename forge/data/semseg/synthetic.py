"""Synthetic coloured-shapes scenes with captions and colour label maps: a CLIP that can be trained on a CPU in
minutes, and a semantic split to segment without any annotation (the ``make demo-denseclip`` data).

Each scene (``render_scene``) has 1..3 shapes of :mod:`forge.data.shapes` (circle, square, triangle, star, cross;
extent 30..60 % of the side, rotated) painted in distinct **named colours** (:data:`COLOURS`) over a grey
textured background, plus pixel noise. The caption names colour and shape of each shape in random order
("a red star and a blue circle"); the label map holds the colour index of each visible shape pixel and 255 on the
background (ignored, as VOC-20's background). Deterministic from ``(seed, index)``.

``write_semantic_split(out, n, size, seed)`` writes ``out/images/*.png``, ``out/annotations/*.png`` and
``out/captions.json``, readable by :class:`forge.data.semseg.SemSegDataset` (``img_suffix='.png'``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from forge.data.shapes import CATEGORIES, _rasterise, _shape_polygon

__all__ = ["COLOURS", "SHAPES", "render_scene", "make_batch", "write_semantic_split"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (35, 60, 225),
    "yellow": (235, 215, 30), "purple": (140, 40, 190), "orange": (245, 130, 20),
}
SHAPES: tuple[str, ...] = tuple(c["name"] for c in CATEGORIES)
_IDS = [c["id"] for c in CATEGORIES]


def render_scene(rng: np.random.Generator, size: int = 128, max_shapes: int = 3) -> tuple[np.ndarray, np.ndarray, str]:
    """One scene: ``(H, W, 3)`` uint8 image, ``(H, W)`` uint8 colour labels (255 = background), caption."""
    lo, hi = rng.uniform(70, 140), rng.uniform(140, 200)
    t = np.linspace(0, 1, size, dtype=np.float32)
    grad = t[None, :] if rng.uniform() < 0.5 else t[:, None]
    img = np.repeat((lo + (hi - lo) * grad)[..., None] * np.ones((size, size, 1), np.float32), 3, axis=2)
    labels = np.full((size, size), 255, np.uint8)
    n = int(rng.integers(1, max_shapes + 1))
    colour_ids = rng.choice(len(COLOURS), size=n, replace=False)
    names = list(COLOURS)
    parts = []
    for k in range(n):
        for _ in range(30):
            cat = int(rng.choice(_IDS))
            placed = _shape_polygon(rng, cat, rng.uniform(0.3, 0.6) * size, size)
            if placed is None:
                continue
            pts, half = placed
            centre = rng.uniform(half, size - half)
            mask = _rasterise([float(v) for v in (pts + centre).reshape(-1)], size)
            if mask.sum() < 0.02 * size * size:
                continue
            c = int(colour_ids[k])
            img[mask] = np.asarray(COLOURS[names[c]], np.float32) + rng.uniform(-15, 15, 3).astype(np.float32)
            labels[mask] = c
            parts.append(f"a {names[c]} {SHAPES[_IDS.index(cat)]}")
            break
    img += rng.standard_normal(img.shape).astype(np.float32) * 6
    order = rng.permutation(len(parts))
    caption = " and ".join(parts[i] for i in order) if parts else "an empty grey picture"
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels, caption


def make_batch(seed: int, start: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scenes ``start .. start+count-1``: ``(N, H, W, 3)`` uint8, ``(N, H, W)`` labels, captions."""
    imgs, labs, caps = [], [], []
    for i in range(start, start + count):
        img, lab, cap = render_scene(np.random.default_rng([seed, i]), size)
        imgs.append(img)
        labs.append(lab)
        caps.append(cap)
    return np.stack(imgs), np.stack(labs), caps


def write_semantic_split(out: str, num_images: int, size: int = 128, seed: int = 1) -> str:
    """Write a split of ``num_images`` scenes under ``out`` (see module docstring); returns ``out``."""
    from PIL import Image

    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    captions = {}
    for i in range(num_images):
        img, lab, cap = render_scene(np.random.default_rng([seed, i]), size)
        stem = f"{i:06d}"
        Image.fromarray(img).save(os.path.join(out, "images", stem + ".png"))
        Image.fromarray(lab, mode="L").save(os.path.join(out, "annotations", stem + ".png"))
        captions[stem] = cap
    with open(os.path.join(out, "captions.json"), "w") as f:
        json.dump(dict(classes=list(COLOURS), size=size, seed=seed, captions=captions), f, indent=0)
    return out
