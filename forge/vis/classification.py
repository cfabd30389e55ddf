"""Draw a classification prediction: the input image, enlarged, captioned with prediction and ground truth."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def draw_classification(
    data_batch: dict, outputs: list[dict], index: int, classes: list[str] | None = None, size: int = 96
) -> np.ndarray:
    """RGB uint8 ``(size + 14, size, 3)`` picture of sample ``index``: green caption if correct, red if not.

    The batch holds pixel values (uint8, or float in [0, 255]: datasets never normalise, the model does).
    """
    x = data_batch["inputs"][index].detach().float().cpu()
    img = x.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    pil = Image.fromarray(img).resize((size, size), Image.NEAREST)
    canvas = Image.new("RGB", (size, size + 14), "white")
    canvas.paste(pil, (0, 0))
    out = outputs[index]
    pred, gt = out["pred_label"], out.get("gt_label")

    def name(k):
        return classes[k] if classes else str(k)

    text = f"{name(pred)}" + (f" / gt {name(gt)}" if gt is not None else "")
    colour = (0, 140, 0) if gt is None or gt == pred else (200, 0, 0)
    ImageDraw.Draw(canvas).text((2, size + 1), text, fill=colour)
    return np.asarray(canvas)
