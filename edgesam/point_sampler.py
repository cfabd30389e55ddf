"""Refinement points from the student-teacher disagreement (EdgeSAM's prompt-in-the-loop, paper Sec. 3.2; official
``training/train.py`` + ``edge_sam.utils.common.sample_point_in_mask``).

After a decode, the student's and the teacher's low-resolution logits are binarised at the mask threshold (0) and
restricted to the unpadded image. With several masks per prompt (point prompts decode all four mask tokens), the
mask the **teacher** rates highest (its IoU prediction) is taken for both. One pixel is drawn uniformly from the
disagreement ``FN | FP``: a pixel the teacher has and the student misses (false negative) becomes a positive point
(label 1), one the student has and the teacher does not (false positive) a negative point (label 0). A disagreement of
fewer than ``10 x num_points`` pixels gives ignored points (label -2, position (0, 0)). The drawing itself is
:func:`edgesam.prompts.refinement_points` (the same rule as the official evaluation's correction clicks), with the
teacher's mask as the target. The grid index is scaled to the padded input frame as the official code does
(``x * W_in / w``, i.e. x 4 at 256 x 256 for a 1024 input; the prompt encoder adds the half pixel), and the new
points are appended after the earlier ones (a box prompt keeps its box).
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgesam.losses import valid_grid
from edgesam.prompts import refinement_points

__all__ = ["select_masks", "disagreement_points", "append_points"]


def select_masks(logits: Tensor, by_iou: Tensor | None) -> Tensor:
    """``(P, K, h, w)`` -> ``(P, h, w)``: the mask of highest ``by_iou`` ``(P, K)`` per prompt (K = 1: that mask)."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be (P, K, h, w), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return logits[:, 0]
    if by_iou is None or by_iou.shape != logits.shape[:2]:
        raise ValueError(f"{logits.shape[1]} masks per prompt need IoU predictions of shape {tuple(logits.shape[:2])}, "
                         f"got {None if by_iou is None else tuple(by_iou.shape)}")
    idx = by_iou.argmax(1)
    return logits[torch.arange(logits.shape[0], device=logits.device), idx]


@torch.no_grad()
def disagreement_points(student_logits: Tensor, teacher_logits: Tensor, teacher_iou: Tensor | None,
                        valid: Tensor | None, input_size: tuple[int, int], num_points: int = 1,
                        threshold: float = 0.0, min_error_per_point: int = 10,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """New prompt points where the student disagrees with the teacher.

    Args:
        student_logits, teacher_logits: ``(P, K, h, w)`` low-res mask logits of the same prompts.
        teacher_iou: ``(P, K)`` the teacher's IoU predictions (picks the mask when K > 1).
        valid: ``(P, 1, H, W)`` float validity of the padded input (1 = image), or None (everywhere).
        input_size: ``(H_in, W_in)`` of the padded input frame the points are returned in.
        num_points: points per prompt (official ``POINTS_PER_REFINE_ITER = 1``).
        threshold: mask threshold of both models' logits.
        min_error_per_point: fewer disagreeing pixels than ``min_error_per_point * num_points`` -> ignored points.
        generator: CPU generator for the draw.

    Returns:
        points ``(P, num_points, 2)`` float32 (x, y) in the input frame, labels ``(P, num_points)`` int64 in
        {1, 0, -2}, on the logits' device.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} logits "
                         "differ in shape")
    student = select_masks(student_logits, teacher_iou) > threshold
    teacher = select_masks(teacher_logits, teacher_iou) > threshold
    h, w = student.shape[-2:]
    keep = None if valid is None else valid_grid(valid, (h, w))[:, 0] > 0.5
    points, labels = refinement_points(student, teacher, keep, num_points=num_points,
                                       min_error_per_point=min_error_per_point, generator=generator)
    scale = points.new_tensor([input_size[1] / w, input_size[0] / h])
    return points * scale, labels


def append_points(previous: tuple[Tensor, Tensor] | None, new: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """``(P, N, 2)`` + ``(P, N)`` earlier points (or None) followed by the new ``(P, M, 2)`` / ``(P, M)``."""
    if previous is None:
        return new
    return torch.cat([previous[0], new[0]], 1), torch.cat([previous[1].to(new[1].dtype), new[1]], 1)
