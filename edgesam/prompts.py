"""Prompts drawn from ground-truth instances, as the EdgeSAM evaluation (``evaluation/eval_mIoU.py``) draws them.

All functions are pure: masks are ``(N, H, W)`` bool, points are ``(x, y)`` **pixel indices** of the masks' grid
(column, row; SAM's prompt encoder adds the half-pixel shift itself), boxes are xyxy with exclusive ``x2`` / ``y2``.
Randomness comes only from the ``torch.Generator`` passed in (``None`` = torch's global generator), drawn on the CPU so
that a seed gives the same prompts on any device.

Definitions (what the official evaluation does, and where ours differs):

* **GT box** (:func:`box_prompts`): the annotation's box, COCO ``xywh`` converted to ``xyxy`` (``x2 = x + w``).
* **Mask centre** (:func:`center_points`): the mask pixel farthest from the mask's boundary, i.e. the argmax of the
  distance from each mask pixel to the nearest pixel *outside* the mask, where everything beyond the image border
  counts as outside (the official code pads the mask with one background pixel before the distance transform).
  Ties go to the first pixel in row-major order (``torch.argmax`` on a flattened map, as the official code).
  Ours uses the exact Euclidean distance transform (``scipy.ndimage.distance_transform_edt``); the official code
  uses ``kornia.contrib.distance_transform``, an iterative 3x3 soft-min approximation of it, so on masks with several
  nearly equidistant pixels the two can pick different pixels. The official code computes the centre on the GT mask
  resized (nearest) to the model's input frame; :mod:`edgesam.evaluate` does the same.
* **Random point** (:func:`random_points`): uniform over the mask's pixels (the official ``mask-rand`` option).
* **Refinement points** (:func:`refinement_points`): one pixel drawn uniformly from the error region of the
  previous prediction, ``FN = gt & ~pred`` (positive point, label 1) or ``FP = pred & ~gt`` (negative point,
  label 0); when the error region has fewer than ``10 x num_points`` pixels the point is ``(0, 0)`` with label
  ``-2``, which the prompt encoder ignores. The official evaluation samples on the 256 x 256 low-res grid of the
  padded input (prediction ``logits > 0``, GT bilinearly downsampled ``> 0``, both restricted to the unpadded
  area) and multiplies the grid index by 4; :mod:`edgesam.evaluate` does the same. The new point is appended to the
  earlier ones and the box is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from forge.ops import box_xywh_to_xyxy

__all__ = ["IGNORE_LABEL", "box_prompts", "center_points", "random_points", "refinement_points"]

IGNORE_LABEL = -2  # point label the prompt encoder skips (EdgeSAM's convention)


def _check_masks(masks: Tensor, name: str = "masks") -> Tensor:
    if not isinstance(masks, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(masks).__name__}")
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W), got shape {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        raise TypeError(f"{name} must be bool, got {masks.dtype}")
    return masks


def _check_nonempty(masks: Tensor, name: str = "masks") -> None:
    empty = (~masks.flatten(1).any(1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"{name} {empty.tolist()} are empty: no point can be drawn inside an empty mask")


def box_prompts(boxes: Tensor, box_format: str = "xyxy") -> Tensor:
    """GT box prompts.

    Args:
        boxes: ``(N, 4)`` boxes in pixels.
        box_format: ``'xyxy'`` or ``'xywh'`` (COCO annotation / results ``bbox``).

    Returns:
        ``(N, 4)`` float32 xyxy boxes. A box with negative width or height is a ``ValueError`` naming its index.
    """
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a (N, 4) tensor, got {shape}")
    boxes = boxes.float()
    if box_format == "xywh":
        boxes = box_xywh_to_xyxy(boxes)
    elif box_format != "xyxy":
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    bad = ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | ~boxes.isfinite().all(1)).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"box {i} is inverted or not finite: {boxes[i].tolist()} (xyxy)")
    return boxes


def center_points(masks: Tensor) -> Tensor:
    """Mask-centre point prompts: per mask, the pixel farthest (Euclidean) from any pixel outside the mask.

    Args:
        masks: ``(N, H, W)`` bool, each non-empty (an empty mask is a ``ValueError`` naming its index).

    Returns:
        ``(N, 1, 2)`` float32 ``(x, y)`` pixel indices on the masks' device.
    """
    masks = _check_masks(masks)
    _check_nonempty(masks)
    out = torch.zeros((masks.shape[0], 1, 2), dtype=torch.float32)
    for i, mask in enumerate(masks.cpu().numpy()):
        # one background pixel around the image: the image border is a boundary of the mask
        dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        row, col = divmod(int(np.argmax(dist)), mask.shape[1])
        out[i, 0, 0], out[i, 0, 1] = col, row
    return out.to(masks.device)


def random_points(masks: Tensor, num_points: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """Point prompts drawn uniformly (with replacement) from each mask's pixels.

    Args:
        masks: ``(N, H, W)`` bool, each non-empty.
        num_points: K points per mask.
        generator: CPU generator; the same seed gives the same points.

    Returns:
        ``(N, K, 2)`` float32 ``(x, y)`` pixel indices on the masks' device.
    """
    masks = _check_masks(masks)
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    _check_nonempty(masks)
    out = torch.zeros((masks.shape[0], num_points, 2), dtype=torch.float32)
    width = masks.shape[2]
    for i, mask in enumerate(masks.cpu()):
        flat = mask.flatten().nonzero().flatten()
        pick = flat[torch.randint(flat.numel(), (num_points,), generator=generator)]
        out[i, :, 0], out[i, :, 1] = (pick % width).float(), (pick // width).float()
    return out.to(masks.device)


def refinement_points(pred_masks: Tensor, gt_masks: Tensor, valid: Tensor | None = None, num_points: int = 1,
                      min_error_per_point: int = 10,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Correction clicks from the error region of a previous prediction.

    Args:
        pred_masks: ``(N, H, W)`` bool, the previous binarised prediction.
        gt_masks: ``(N, H, W)`` bool, the target (GT, or the teacher's mask in distillation).
        valid: ``(H, W)`` or ``(N, H, W)`` bool, where points may be drawn (the unpadded image); default everywhere.
        num_points: K points per mask, drawn uniformly with replacement from ``FP | FN``.
        min_error_per_point: an error region smaller than ``min_error_per_point * K`` pixels gives K ignored points.
        generator: CPU generator.

    Returns:
        points ``(N, K, 2)`` float32 ``(x, y)`` pixel indices of the masks' grid, labels ``(N, K)`` int64: 1 where
        the point is a false negative (positive click), 0 a false positive (negative click), ``IGNORE_LABEL`` (-2,
        point ``(0, 0)``) where the error region is too small. Both on the masks' device.
    """
    pred_masks, gt_masks = _check_masks(pred_masks, "pred_masks"), _check_masks(gt_masks, "gt_masks")
    if pred_masks.shape != gt_masks.shape:
        raise ValueError(f"pred_masks {tuple(pred_masks.shape)} and gt_masks {tuple(gt_masks.shape)} differ in shape")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    device = pred_masks.device
    pred, gt = pred_masks.cpu(), gt_masks.cpu()
    if valid is not None:
        if valid.dtype != torch.bool or valid.shape[-2:] != pred.shape[-2:] or valid.ndim not in (2, 3):
            raise ValueError(f"valid must be bool (H, W) or (N, H, W) matching {tuple(pred.shape)}, "
                             f"got {valid.dtype} {tuple(valid.shape)}")
        valid = valid.cpu()
        pred, gt = pred & valid, gt & valid
    error = pred ^ gt
    n, _, width = pred.shape
    points = torch.zeros((n, num_points, 2), dtype=torch.float32)
    labels = torch.full((n, num_points), IGNORE_LABEL, dtype=torch.int64)
    for i in range(n):
        flat = error[i].flatten().nonzero().flatten()
        if flat.numel() < min_error_per_point * num_points:
            continue
        pick = flat[torch.randint(flat.numel(), (num_points,), generator=generator)]
        points[i, :, 0], points[i, :, 1] = (pick % width).float(), (pick // width).float()
        labels[i] = gt[i].flatten()[pick].long()  # in the error region: GT on -> missed (FN, 1), off -> FP (0)
    return points.to(device), labels.to(device)
