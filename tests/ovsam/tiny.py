"""Small seeded OVSAM models for the tests (CPU, a few seconds)."""

from __future__ import annotations

import torch

from ovsam import CLIP2SAM, clip_backbone

#: ResNet CLIP of width 8 (levels 32 / 64 / 128 / 256 channels, embed 32), text tower 1 block of width 64.
TINY_RN = dict(embed_dim=32, vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8, patch_size=None),
               text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1))
INPUT = 256  # encoder input side -> 16 x 16 embedding grid, 64 x 64 low-res masks


def tiny_clip2sam(seed: int = 0) -> CLIP2SAM:
    torch.manual_seed(seed)
    model = CLIP2SAM(clip_backbone(TINY_RN), embed_dim=64, input_size=INPUT,
                     sam2clip_kwargs=dict(num_heads=4, depth=2, global_attn_indexes=(1,)))
    with torch.no_grad():  # BatchNorm statistics of O(1) activations, reproducible
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
    return model.eval()
