"""SAM2CLIP: a transformer adapter from frozen CLIP features to SAM's image-embedding space (OVSAM Sec. 3.2).

The official ``MultiLayerTransformerNeck``: each of the four CLIP levels (strides 4 / 8 / 16 / 32) is patch-embedded
to the SAM width at stride 16 (a k = s conv with stride k for finer levels, k = 2 transposed conv for stride 32),
plus a learnt per-level encoding; the levels are summed, SAM's absolute positional embedding is added (a buffer,
copied from SAM ViT-H when distilling), then 5 SAM ViT blocks (window 14, the last global, relative positions) and
SAM's neck give ``256 x 64 x 64`` at a 1024 input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.common import sam_neck
from edgesam.image_encoder import Block

STRIDE = 16


class PatchEmbed(nn.Module):
    """mmdet's ``PatchEmbed`` without norm: bottom-right zero padding to a multiple of the kernel (``padding=
    'corner'``), ``projection`` conv (or transposed conv), output ``(B, h, w, C)`` channels last."""

    def __init__(self, in_chans: int, embed_dim: int, kernel: int, transposed: bool = False) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.projection = conv(in_chans, embed_dim, kernel_size=kernel, stride=kernel)
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel
        pad_h, pad_w = (-x.shape[-2]) % k, (-x.shape[-1]) % k
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.projection(x).permute(0, 2, 3, 1)


class SAM2CLIP(nn.Module):
    """Multi-level CLIP features -> SAM image embedding.

    Args:
        in_channels: channels of the four CLIP levels (RN50x16: 384, 768, 1536, 3072).
        strides: their strides (4, 8, 16, 32).
        embed_dim: SAM ViT width (ViT-H 1280).
        out_chans: embedding channels (256).
        input_size: encoder input side (1024) -> token grid ``input_size / 16``.
        depth, num_heads, window_size, global_attn_indexes: the SAM blocks (5, 16, 14, (4,)).
    """

    def __init__(self, in_channels: Sequence[int] = (384, 768, 1536, 3072), strides: Sequence[int] = (4, 8, 16, 32),
                 embed_dim: int = 1280, out_chans: int = 256, input_size: int = 1024, depth: int = 5,
                 num_heads: int = 16, window_size: int = 14, global_attn_indexes: Sequence[int] = (4,)) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} in_channels for {len(strides)} strides")
        if input_size % STRIDE:
            raise ValueError(f"input_size {input_size} is not a multiple of {STRIDE}")
        grid = input_size // STRIDE
        self.grid = grid
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(c, embed_dim, s // STRIDE, transposed=True) if s > STRIDE
            else PatchEmbed(c, embed_dim, STRIDE // s) for c, s in zip(in_channels, strides))
        # persistent buffer, as in the official file (SAM ViT-H's pos_embed; zeros until loaded)
        self.register_buffer("pos_embed", torch.zeros(1, grid, grid, embed_dim))
        self.level_encoding = nn.Embedding(len(in_channels), embed_dim)
        nn.init.normal_(self.level_encoding.weight, 0.0, 1.0)  # the official init_weights
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, 4.0, True, 1e-6, True, 0 if i in global_attn_indexes else window_size,
                  (grid, grid)) for i in range(depth))
        self.neck = sam_neck(embed_dim, out_chans)

    def fuse_levels(self, feats: Sequence[Tensor]) -> Tensor:
        """Patch-embedded levels + level encodings, summed: ``(B, grid, grid, embed_dim)``."""
        if len(feats) != len(self.patch_embeds):
            raise ValueError(f"SAM2CLIP expects {len(self.patch_embeds)} feature levels, got {len(feats)}")
        out = 0
        for i, (f, embed) in enumerate(zip(feats, self.patch_embeds)):
            out = out + embed(f) + self.level_encoding.weight[i]
        return out

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Four CLIP maps -> ``(B, out_chans, grid, grid)``."""
        x = self.fuse_levels(feats)
        if tuple(x.shape[1:3]) != tuple(self.pos_embed.shape[1:3]):
            raise ValueError(f"fused grid {tuple(x.shape[1:3])} does not match the positional embedding "
                             f"{tuple(self.pos_embed.shape[1:3])} (input must be {self.grid * STRIDE} px)")
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
