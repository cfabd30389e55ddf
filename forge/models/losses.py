"""Classification losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on logits ``(B, C)`` against hard labels ``(B,)`` or soft targets ``(B, C)``.

    Soft targets come from batch mixing (Mixup/CutMix, which already smooth the labels); hard labels use
    ``label_smoothing``. The result is multiplied by ``loss_weight``.
    """

    def __init__(self, label_smoothing: float = 0.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.ndim == 2:
            loss = (-target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        else:
            loss = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        return self.loss_weight * loss
