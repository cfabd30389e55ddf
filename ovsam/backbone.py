"""Frozen CLIP ResNet image tower as OVSAM's backbone, with the official module names.

The official ``OpenCLIPBackbone`` regroups open_clip's ``ModifiedResNet``: ``stem`` = (conv1, bn1, act1, conv2, bn2,
act2, conv3, bn3, act3) as one ``nn.Sequential`` (keys ``stem.{0,1,3,4,6,7}``), ``layer1..4`` and ``head`` = the
attention pool. We hold the same open_clip submodules under those names, so a checkpoint's ``backbone.*`` keys load
directly and a :class:`denseclip.LoadedCLIP` supplies the weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CLIPResNetBackbone(nn.Module):
    """Four feature maps (strides 4, 8, 16, 32) of a CLIP ResNet; frozen (eval mode, no gradients) by default.

    Args:
        visual: open_clip ``ModifiedResNet`` (``clip.visual``).
        frozen: keep eval mode and ``requires_grad=False`` (the paper's frozen CLIP).
    """

    def __init__(self, visual: nn.Module, frozen: bool = True) -> None:
        super().__init__()
        if not hasattr(visual, "attnpool"):
            raise ValueError(f"OVSAM needs a CLIP ResNet image tower (open_clip ModifiedResNet), got "
                             f"{type(visual).__name__}")
        self.stem = nn.Sequential(visual.conv1, visual.bn1, visual.act1, visual.conv2, visual.bn2, visual.act2,
                                  visual.conv3, visual.bn3, visual.act3)
        self.avgpool = visual.avgpool
        for i in range(1, 5):
            self.add_module(f"layer{i}", getattr(visual, f"layer{i}"))
        self.head = visual.attnpool
        self.out_channels = [self.layer1[-1].conv3.out_channels, self.layer2[-1].conv3.out_channels,
                             self.layer3[-1].conv3.out_channels, self.layer4[-1].conv3.out_channels]
        # attention-pool grid side (12 for RN50x16 at 384 px): the RoI size of the frozen-CLIP branch
        self.feat_size = int(round((self.head.positional_embedding.shape[0] - 1) ** 0.5))
        self.embed_dim = self.head.c_proj.out_features
        self.frozen = frozen
        if frozen:
            for p in self.parameters():
                p.requires_grad_(False)
            super().train(False)

    def train(self, mode: bool = True) -> CLIPResNetBackbone:
        return super().train(False if self.frozen else mode)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(B, 3, H, W)`` normalised image -> maps ``(B, C_i, H / s_i, W / s_i)``, ``s = 4, 8, 16, 32``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = self.avgpool(self.stem(x))
            outs = []
            for i in range(1, 5):
                x = getattr(self, f"layer{i}")(x)
                outs.append(x)
        return tuple(outs)

    def pool(self, roi_feats: Tensor) -> Tensor:
        """CLIP's attention pool on RoI features ``(N, C4, s, s)`` (``s = feat_size``) -> ``(N, D)``."""
        return self.head(roi_feats)
