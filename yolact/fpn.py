"""Feature pyramid P3-P7 as used by YOLACT (Sec. 3 / Fig. 2 of the paper; FPN, Lin et al. 2017).

Top-down: ``L5 = lat(C5)``, ``L4 = lat(C4) + up(L5)``, ``L3 = lat(C3) + up(L4)`` (bilinear, ``align_corners=False``,
to the lateral's exact size). Outputs ``P_i = ReLU(conv3x3(L_i))`` for i = 3..5 (the ReLU is the original's), then
``P6 = conv3x3_s2(P5)`` and ``P7 = conv3x3_s2(P6)``, no ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """Args:
        in_channels: channels of C3, C4, C5 (in that order).
        channels: pyramid width (256).
        num_extra: stride-2 levels added on top of P5 (2: P6, P7).
        relu_outputs: ReLU after the P3-P5 output convs.

    Shapes:
        ``[C3 (B, c3, H3, W3), C4, C5]`` -> ``[P3 (B, 256, H3, W3), ..., P7]``.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256, num_extra: int = 2,
                 relu_outputs: bool = True) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.extra = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_extra))
        self.relu_outputs = relu_outputs

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        n = len(feats)
        lat: list[Tensor] = [None] * n  # type: ignore[list-item]
        x = self.lateral[n - 1](feats[n - 1])
        lat[n - 1] = x
        for i in range(n - 2, -1, -1):
            x = F.interpolate(x, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.lateral[i](feats[i])
            lat[i] = x
        outs = [conv(t) for conv, t in zip(self.output, lat)]
        if self.relu_outputs:
            outs = [F.relu(t) for t in outs]
        for conv in self.extra:
            outs.append(conv(outs[-1]))
        return outs
