"""EdgeSAM's distillation losses (paper Sec. 3; official ``training/train.py`` and ``training/utils.py``).

* :func:`embedding_mse` (phase 1, encoder-only KD): per-pixel squared error between the student's and the teacher's
  image embeddings, averaged over channels, then over the embedding pixels that fall inside the unpadded image (the
  padded-input validity map is bilinearly downsampled to the embedding grid and thresholded at 0.5), then over images.
  The official code divides each image's sum by a ``(B, 1)`` count, which broadcasts to a ``(B, B)`` matrix whose mean
  is ``mean_i(S_i) * mean_j(1 / n_j)``; that equals the per-image mean used here whenever every image of the batch has
  the same valid area (square images, or one aspect ratio), and is what the code meant otherwise.
* :func:`mask_bce` / :func:`mask_dice` (phase 2, prompt-in-the-loop KD): on the decoder's **low-resolution** logits
  (``(P, K, 4h, 4w)``: 256 x 256 for a 1024 input) against a binary target (the teacher's logits ``> 0``), weighted by
  the validity map bilinearly downsampled to that grid (fractional weights on the image border, not thresholded).
  BCE: per prompt, the weighted sum over all ``K`` masks and pixels divided by the weight sum, then the mean over
  prompts. Dice: per (prompt, mask), ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` with ``p = sigmoid(logit) * v``,
  ``t = target * v``, then the mean. The official BCE takes ``log`` of ``sigmoid`` (PyTorch clamps it at -100); ours
  uses the log-sum-exp form, equal to it until a logit passes about +-16 on the wrong side.
* :class:`PromptLoss`: ``bce_weight * BCE + dice_weight * Dice`` per decode iteration, each divided by the number of
  iterations (official ``DECODER_BCE = DECODER_DICE = 5``, ``DECODE_ITERS = 2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["valid_grid", "embedding_mse", "mask_bce", "mask_dice", "binarise", "PromptLoss", "EmbeddingLoss"]


def valid_grid(valid: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, 1, H, W)`` float validity of the padded input (1 inside the image) -> ``(B, 1, h, w)`` bilinear
    (``align_corners=False``) weights on a ``size`` grid, as the official code downsamples it."""
    if valid.ndim != 4 or valid.shape[1] != 1:
        raise ValueError(f"valid must be (B, 1, H, W), got {tuple(valid.shape)}")
    return F.interpolate(valid.float(), size=tuple(size), mode="bilinear", align_corners=False)


def embedding_mse(student: Tensor, teacher: Tensor, valid: Tensor | None = None) -> Tensor:
    """Phase-1 loss.

    Args:
        student, teacher: ``(B, C, h, w)`` image embeddings.
        valid: ``(B, 1, H, W)`` validity of the padded input (1 = image, 0 = padding) at any resolution; None = all.

    Returns:
        scalar: mean over images of (sum over valid embedding pixels of the channel-mean squared error) / (number of
        valid pixels).
    """
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} embeddings must be the "
                         "same (B, C, h, w)")
    err = (student.float() - teacher.float()).pow(2).mean(1)  # (B, h, w)
    if valid is None:
        return err.mean()
    keep = (valid_grid(valid, err.shape[-2:]) > 0.5)[:, 0].float()
    count = keep.flatten(1).sum(1)
    if bool((count == 0).any()):
        raise ValueError("embedding_mse: an image has no valid embedding pixel (validity map all zero)")
    return ((err * keep).flatten(1).sum(1) / count).mean()


def _check(logits: Tensor, target: Tensor, weight: Tensor | None) -> None:
    if logits.ndim != 4 or logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must be the same (P, K, h, w)")
    if weight is not None and (weight.ndim != 4 or weight.shape[0] != logits.shape[0]
                               or weight.shape[-2:] != logits.shape[-2:]
                               or weight.shape[1] not in (1, logits.shape[1])):
        raise ValueError(f"weight {tuple(weight.shape)} must be (P, 1 or K, h, w) for logits {tuple(logits.shape)}")


def mask_bce(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``target`` in [0, 1], both ``(P, K, h, w)``; ``weight``
    ``(P, 1 | K, h, w)`` (validity on the logit grid). Per prompt: weighted mean over masks and pixels; then the mean
    over prompts."""
    _check(logits, target, weight)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if weight is None:
        return loss.mean()
    weight = weight.float().expand_as(loss)
    return ((loss * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)).mean()


def mask_dice(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Soft Dice loss with +1 smoothing per (prompt, mask), ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)``,
    ``p = sigmoid(logits) * weight``, ``t = target * weight``; mean over prompts and masks."""
    _check(logits, target, weight)
    p, t = logits.float().sigmoid(), target.float()
    if weight is not None:
        weight = weight.float().expand_as(p)
        p, t = p * weight, t * weight
    p, t = p.flatten(2), t.flatten(2)
    return (1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)).mean()


class EmbeddingLoss(nn.Module):
    """Phase 1: ``weight * embedding_mse`` (official ``DISTILL.PIXEL_WISE = 1``), as ``{'loss_pixel': ...}``."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, student: Tensor, teacher: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
        return {"loss_pixel": self.weight * embedding_mse(student, teacher, valid)}


class PromptLoss(nn.Module):
    """Phase 2 (and the teacher's own training): per decode iteration ``i`` of ``num_iters``,
    ``loss_bce_i = bce_weight * BCE / num_iters`` and ``loss_dice_i = dice_weight * Dice / num_iters``."""

    def __init__(self, bce_weight: float = 5.0, dice_weight: float = 5.0) -> None:
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"PromptLoss: weights must be >= 0 and not both 0, got bce_weight={bce_weight}, "
                             f"dice_weight={dice_weight}")
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None, iteration: int,
                num_iters: int) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.bce_weight > 0:
            out[f"loss_bce_{iteration}"] = mask_bce(logits, target, weight) * (self.bce_weight / num_iters)
        if self.dice_weight > 0:
            out[f"loss_dice_{iteration}"] = mask_dice(logits, target, weight) * (self.dice_weight / num_iters)
        return out


def binarise(logits: Tensor, threshold: float = 0.0) -> Tensor:
    """The teacher's target: ``(logits > threshold)`` as float (official ``USE_TEACHER_LOGITS = False``)."""
    return (logits > threshold).to(torch.float32)
