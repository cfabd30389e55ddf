"""Draw instance predictions (masks, boxes, labels with scores) on an RGB image. Paper-agnostic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# a fixed, well-separated palette (RGB); instance i gets PALETTE[i % len(PALETTE)]
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
)


def _as_numpy(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def draw_instances(
    image: np.ndarray,
    boxes=None,
    labels=None,
    scores=None,
    masks=None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.45,
    score_threshold: float = 0.0,
    line_width: int = 2,
) -> np.ndarray:
    """Overlay instances on an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` xyxy pixels (numpy or torch), or None.
        labels: ``(N,)`` class indices, or None.
        scores: ``(N,)`` confidences, or None (then nothing is filtered and no score is printed).
        masks: ``(N, H, W)`` bool bitmaps at the image size, or None.
        class_names: names indexed by label; the index is printed when absent.
        alpha: mask opacity.
        score_threshold: instances with a score below it are skipped.
        line_width: box outline width in pixels.

    Returns:
        a new ``(H, W, 3)`` uint8 RGB image.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_instances: image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    boxes, labels, scores, masks = map(_as_numpy, (boxes, labels, scores, masks))
    n = next((len(v) for v in (boxes, masks, labels) if v is not None), 0)
    keep = np.ones(n, bool) if scores is None else scores >= score_threshold
    out = image.astype(np.float32)
    colors = np.array([PALETTE[i % len(PALETTE)] for i in range(n)], np.float32).reshape(n, 3)
    if masks is not None:
        if masks.shape[1:] != image.shape[:2]:
            raise ValueError(f"draw_instances: masks are {masks.shape[1:]}, image is {image.shape[:2]}")
        for i in np.flatnonzero(keep)[::-1]:  # best-scored last, so on top
            m = masks[i].astype(bool)
            out[m] = out[m] * (1 - alpha) + colors[i] * alpha
    pil = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if boxes is not None:
        draw = ImageDraw.Draw(pil)
        font = ImageFont.load_default()
        for i in np.flatnonzero(keep):
            color = tuple(int(c) for c in colors[i])
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            draw.rectangle([x1, y1, x2, y2], outline=color, width=line_width)
            text = ""
            if labels is not None:
                lab = int(labels[i])
                text = class_names[lab] if class_names is not None and 0 <= lab < len(class_names) else str(lab)
            if scores is not None:
                text = f"{text} {float(scores[i]):.2f}".strip()
            if text:
                left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
                ty = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
                draw.rectangle([x1, ty, x1 + (right - left) + 4, ty + (bottom - top) + 2], fill=color)
                draw.text((x1 + 2, ty), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)
