"""Prototype generation branch ("protonet", YOLACT Sec. 3.2, Fig. 3).

On P3: three ``3x3 conv + ReLU`` (256), bilinear x2 upsampling + ReLU, ``3x3 conv + ReLU`` (256), ``1x1 conv`` to
``k`` prototypes and a final ReLU (prototypes are unbounded non-negative). For a 550 input P3 is 69x69 and the
prototypes 138x138.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ProtoNet(nn.Module):
    """Args:
        in_channels: P3 channels.
        channels: hidden width.
        num_prototypes: ``k`` (32).

    Shapes:
        ``(B, in_channels, H, W) -> (B, k, 2H, 2W)``.
    """

    def __init__(self, in_channels: int = 256, channels: int = 256, num_prototypes: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1) for i in range(3))
        self.up_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.proj = nn.Conv2d(channels, num_prototypes, 1)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        x = F.relu(self.up_conv(x))
        return F.relu(self.proj(x))
