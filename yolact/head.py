"""Prediction head shared across pyramid levels (YOLACT Sec. 3.3, Fig. 4) and the semantic auxiliary head.

Per level: ``3x3 conv + ReLU`` (256), then three sibling 3x3 convs giving per anchor 4 box deltas, ``C + 1`` class
logits (background at index 0) and ``k`` mask coefficients (``tanh``). Outputs are flattened level by level in
``(y, x, anchor)`` order, the order of :func:`yolact.anchors.make_anchors`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PredictionHead(nn.Module):
    """Args:
        in_channels: pyramid width.
        num_anchors: anchors per location ``a`` (3 for YOLACT, 9 for YOLACT++).
        num_classes: foreground classes ``C`` (the class output has ``C + 1`` channels per anchor).
        num_prototypes: ``k``.

    Shapes:
        list of ``(B, in_channels, H_l, W_l)`` -> ``boxes (B, A, 4)``, ``cls_logits (B, A, C + 1)``,
        ``coefs (B, A, k)`` with ``A = a * sum_l H_l W_l``.
    """

    def __init__(self, in_channels: int = 256, num_anchors: int = 3, num_classes: int = 80,
                 num_prototypes: int = 32) -> None:
        super().__init__()
        self.num_classes, self.num_prototypes = num_classes, num_prototypes
        self.shared = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.box = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        self.cls = nn.Conv2d(in_channels, num_anchors * (num_classes + 1), 3, padding=1)
        self.coef = nn.Conv2d(in_channels, num_anchors * num_prototypes, 3, padding=1)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        boxes, logits, coefs = [], [], []
        for x in feats:
            b = x.shape[0]
            x = F.relu(self.shared(x))
            boxes.append(self.box(x).permute(0, 2, 3, 1).reshape(b, -1, 4))
            logits.append(self.cls(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes + 1))
            coefs.append(self.coef(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_prototypes))
        return torch.cat(boxes, 1), torch.cat(logits, 1), torch.cat(coefs, 1).tanh()


class SemanticHead(nn.Module):
    """Training-only semantic segmentation logits on P3 (YOLACT Sec. 3.6): ``1x1 conv`` to ``C`` channels.

    ``(B, in_channels, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 80) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)
