"""Fast Mask Re-Scoring network of YOLACT++ (TPAMI paper, Sec. 4.2).

Input: a predicted soft mask cropped to its box at prototype resolution (138x138 for 550). Five ``3x3`` convs with
stride 2 and **no padding** (8, 16, 32, 64, 128 channels, each + ReLU), a ``1x1`` conv to ``C`` classes + ReLU and a
global max-pool give one predicted mask IoU per class. At test time the mask score is ``class score x IoU`` of the
predicted class; the box score is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class MaskIoUNet(nn.Module):
    """Args:
        num_classes: ``C``.
        channels: widths of the stride-2 convs.

    Shapes:
        ``(N, 1, H, W) -> (N, C)`` (needs ``H, W >= 63`` for five unpadded stride-2 3x3 convs).
    """

    def __init__(self, num_classes: int = 80, channels: Sequence[int] = (8, 16, 32, 64, 128)) -> None:
        super().__init__()
        cins = (1, *channels[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(ci, co, 3, stride=2) for ci, co in zip(cins, channels))
        self.cls = nn.Conv2d(channels[-1], num_classes, 1)

    def forward(self, masks: Tensor) -> Tensor:
        x = masks
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(self.cls(x))
        return x.amax(dim=(2, 3))
