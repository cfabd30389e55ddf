"""Draw one validation sample's detections for the runner's image hook (``runtime.draw_fn``). Paper-agnostic.

``draw_detections(data_batch, outputs, index)`` returns an RGB uint8 picture: the ground truth (left) and the
predictions (right, masks, boxes, class names and scores above ``score_threshold``) on the original image.
Predictions (:class:`forge.data.structures.Detections`) are in original-image coordinates, as every detector here
returns them. The image is read from ``meta.file_name``; when that file cannot be read, the batch's image (RGB pixel
values: datasets never normalise, the model does) is cropped to ``img_shape`` and resized to ``ori_shape``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .draw import draw_instances


def _original_image(data_batch: dict, index: int, meta) -> np.ndarray:
    if meta.file_name and os.path.isfile(meta.file_name):
        try:
            with Image.open(meta.file_name) as im:
                return np.asarray(im.convert("RGB"))
        except OSError:
            pass
    x = data_batch["inputs"][index].detach().float().cpu()
    h, w = (meta.img_shape if meta.img_shape[0] > 0 else x.shape[-2:])
    x = x[:, :h, :w]
    oh, ow = meta.ori_shape if meta.ori_shape[0] > 0 else (h, w)
    if (oh, ow) != (h, w):
        x = F.interpolate(x[None], (oh, ow), mode="bilinear", align_corners=False)[0]
    return x.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def _gt_at_original(gt, meta, shape: tuple[int, int]):
    """GT (network-input coordinates) mapped back to the original image: boxes scaled, masks resized."""
    if gt is None or len(gt) == 0:
        return None, None, None
    sx, sy = meta.scale_factor
    boxes = gt.boxes.detach().float().cpu() / torch.tensor([sx, sy, sx, sy])
    masks = None
    if gt.masks is not None:
        h, w = meta.img_shape if meta.img_shape[0] > 0 else gt.masks.shape[-2:]
        m = gt.masks[:, :h, :w].detach().float().cpu()
        masks = F.interpolate(m[None], shape, mode="bilinear", align_corners=False)[0] > 0.5
    return boxes, gt.labels.cpu(), masks


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + 12), "white")
    canvas.paste(Image.fromarray(image), (0, 12))
    ImageDraw.Draw(canvas).text((2, 0), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def draw_detections(
    data_batch: dict,
    outputs: Sequence,
    index: int,
    classes: Sequence[str] | None = None,
    score_threshold: float = 0.3,
    with_gt: bool = True,
) -> np.ndarray:
    """Ground truth | predictions of sample ``index`` as one RGB uint8 ``(H + 12, W or 2W + 4, 3)`` image.

    Args:
        data_batch: the collated batch (``inputs (B, 3, H, W)``, ``data_samples``).
        outputs: the model's ``predict`` output: :class:`~forge.data.structures.DetSample` with ``pred``.
        index: which sample of the batch.
        classes: class names indexed by label (the label number is printed when absent).
        score_threshold: predictions below it are not drawn.
        with_gt: draw the ground truth beside the predictions.
    """
    sample = outputs[index]
    meta, pred = sample.meta, sample.pred
    image = _original_image(data_batch, index, meta)
    shape = image.shape[:2]
    masks = pred.masks if pred is not None and isinstance(pred.masks, torch.Tensor) else None
    if masks is not None and tuple(masks.shape[-2:]) != shape:
        masks = None
    drawn = draw_instances(image, pred.boxes, pred.labels, pred.scores, masks, classes,
                           score_threshold=score_threshold) if pred is not None else image
    shown = 0 if pred is None else int((pred.scores >= score_threshold).sum())
    right = _caption(drawn, f"pred >= {score_threshold:g}: {shown}")
    if not with_gt:
        return right
    gt = sample.gt
    if gt is None:
        batch_samples = data_batch.get("data_samples") if isinstance(data_batch, dict) else None
        gt = batch_samples[index].gt if batch_samples is not None else None
    boxes, labels, gt_masks = _gt_at_original(gt, meta, shape)
    num_gt = 0 if labels is None else len(labels)
    left = _caption(draw_instances(image, boxes, labels, None, gt_masks, classes), f"ground truth: {num_gt}")
    pad = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, pad, right], axis=1)
