"""CLIP2SAM's training losses and prompts (the official ``OVSAMHead.forward_train`` and ``OVSAMDataPreprocessor``
with ``use_point_det``), as pure functions.

* classification: cross-entropy x 2 over ``K + 1`` logits, class weights 1 and 0.1 for background, prompts with label
  -1 masked out, normalised by the summed class weights of the (clamped) labels;
* masks: on 12,544 points per prompt drawn by uncertainty (mmdet's ``get_uncertain_point_coords_with_randomness``:
  3x oversampling, 75 % most uncertain by ``-|logit|``, 25 % uniform), BCE x 5 (mean over prompts and points) and
  naive Dice x 5 (``1 - (2 sum pt + 1) / (sum p + sum t + 1)``, mean over prompts);
* prompts: the image's instances repeated up to ``num_prompts`` (40), one uniform random pixel inside each mask,
  shuffled; the first ``M // 2 + 1`` (of M) are box prompts (21 of 40), the rest point prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NUM_POINTS = 12544
OVERSAMPLE = 3.0
IMPORTANCE = 0.75
BACKGROUND_WEIGHT = 0.1


def point_sample(x: Tensor, coords: Tensor) -> Tensor:
    """mmcv ``point_sample``: ``(N, C, H, W)`` at normalised ``(N, P, 2)`` (x, y) in [0, 1] -> ``(N, C, P)``
    (bilinear, ``align_corners=False``, zero outside)."""
    return F.grid_sample(x, 2.0 * coords[:, :, None] - 1.0, align_corners=False)[..., 0]


def uncertain_points(logits: Tensor, num_points: int = NUM_POINTS, oversample: float = OVERSAMPLE,
                     importance: float = IMPORTANCE, generator: torch.Generator | None = None) -> Tensor:
    """``(N, 1, H, W)`` mask logits -> ``(N, num_points, 2)`` normalised coordinates."""
    n = logits.shape[0]
    k = int(num_points * oversample)
    cand = torch.rand(n, k, 2, generator=generator).to(logits.device)
    unc = -point_sample(logits.detach(), cand)[:, 0].abs()
    n_unc = int(importance * num_points)
    idx = unc.topk(n_unc, dim=1).indices
    chosen = torch.gather(cand, 1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(n, num_points - n_unc, 2, generator=generator).to(logits.device)
    return torch.cat([chosen, rest], dim=1)


def classification_loss(logits: Tensor, labels: Tensor, weight: float = 2.0,
                        background_weight: float = BACKGROUND_WEIGHT) -> Tensor:
    """``(N, K + 1)`` logits, ``(N,)`` labels in ``0..K`` (K = background) or -1 (ignored) -> scalar."""
    k1 = logits.shape[1]
    cw = torch.ones(k1, dtype=logits.dtype, device=logits.device)
    cw[-1] = background_weight
    keep = labels >= 0
    lab = labels.clamp(min=0)
    per = F.cross_entropy(logits, lab, weight=cw, reduction="none") * keep.to(logits.dtype)
    return weight * per.sum() / cw[lab].sum().clamp(min=torch.finfo(logits.dtype).eps)


def mask_losses(logits: Tensor, gt: Tensor, coords: Tensor, bce_weight: float = 5.0, dice_weight: float = 5.0
                ) -> dict[str, Tensor]:
    """``(N, 1, h, w)`` low-res logits and ``(N, 1, H, W)`` GT masks (padded input frame) sampled at the same
    ``(N, P, 2)`` points -> ``loss_mask`` (BCE) and ``loss_dice``."""
    n = max(logits.shape[0], 1)
    p = point_sample(logits, coords)[:, 0]
    t = point_sample(gt.to(logits.dtype), coords)[:, 0]
    bce = F.binary_cross_entropy_with_logits(p, t, reduction="sum") / (n * p.shape[1])
    s = p.sigmoid()
    dice = 1 - (2 * (s * t).sum(1) + 1) / (s.sum(1) + t.sum(1) + 1)
    return {"loss_mask": bce_weight * bce, "loss_dice": dice_weight * dice.sum() / n}


@dataclass
class TrainPrompts:
    """Prompts of one image: ``index`` into its instances ``(M,)``, ``is_box`` ``(M,)`` bool, ``points`` ``(M, 1, 2)``
    pixel (x, y) inside each instance's mask."""

    index: Tensor
    is_box: Tensor
    points: Tensor


def training_prompts(masks: Tensor, num_prompts: int = 40, generator: torch.Generator | None = None
                     ) -> TrainPrompts:
    """The official point-det prompting for ``(N, H, W)`` GT masks (every mask non-empty)."""
    n = masks.shape[0]
    if n == 0:
        raise ValueError("training_prompts needs at least one instance")
    areas = masks.flatten(1).sum(1)
    if (areas == 0).any():
        raise ValueError(f"instances {torch.nonzero(areas == 0).flatten().tolist()} have empty masks")
    index = torch.arange(n).repeat(num_prompts // n + 1)[:num_prompts] if n < num_prompts else \
        torch.arange(num_prompts)
    pts = []
    for i in index.tolist():
        yx = torch.nonzero(masks[i])
        pick = yx[torch.randint(len(yx), (1,), generator=generator)[0]]
        pts.append(pick.flip(0).to(torch.float32))
    perm = torch.randperm(len(index), generator=generator)
    m = len(index)
    is_box = torch.arange(2).repeat_interleave(m // 2 + 1)[:m] == 0
    return TrainPrompts(index[perm], is_box, torch.stack(pts)[perm][:, None])


def mixed_batch_counts(batch_size: int, image_level_ratio: float) -> tuple[int, int]:
    """Per batch: (segmentation images, image-level-label images) for a configured ratio in [0, 1], rounded to
    the nearest integer (so a batch of 8 at 0.25 holds 6 + 2)."""
    if not 0.0 <= image_level_ratio <= 1.0:
        raise ValueError(f"image_level_ratio must be in [0, 1], got {image_level_ratio}")
    n_cls = int(round(batch_size * image_level_ratio))
    return batch_size - n_cls, n_cls
