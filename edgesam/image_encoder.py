"""SAM's image encoder: a plain ViT with windowed attention, decomposed relative positions and a few global blocks
(ViTDet-style), followed by a neck to ``(B, 256, H/16, W/16)`` (Kirillov et al., 2023, Sec. 3 and App. A).

Parameter names follow ``segment_anything`` (``patch_embed.proj``, ``pos_embed``, ``blocks.N.{norm1, attn.qkv,
attn.proj, attn.rel_pos_h, attn.rel_pos_w, norm2, mlp.lin1, mlp.lin2}``, ``neck.0-3``), so the released
``sam_vit_{b,l,h}`` image encoders load strictly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.common import MLPBlock, sam_neck

# (embed_dim, depth, num_heads, global_attn_indexes) of the released encoders
VIT_CONFIGS: dict[str, tuple[int, int, int, tuple[int, ...]]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def relative_position_table(table: Tensor, size: int) -> Tensor:
    """``(size, size, C)`` embeddings ``R[i, j] = table[i - j + size - 1]`` of the query/key offset along one axis.

    A table learnt for another size (``2 * size - 1`` rows expected) is first resampled linearly along its rows, as
    the official code does for global blocks run at another resolution.
    """
    rows = 2 * size - 1
    if table.shape[0] != rows:
        table = F.interpolate(table.t()[None], size=rows, mode="linear")[0].t()
    offsets = torch.arange(size, device=table.device)
    return table[offsets[:, None] - offsets[None, :] + size - 1]


class Attention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` grid with decomposed relative positions (MViTv2): the score
    of query (i, j) and key (k, l) gets ``q . Rh[i, k] + q . Rw[j, l]`` (unscaled q)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, use_rel_pos: bool = True,
                 input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("relative positions need the attention's input_size")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        # (3, B, heads, H*W, head_dim)
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = None
        if self.use_rel_pos:
            rq = q.reshape(b, self.num_heads, h, w, self.head_dim)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, relative_position_table(self.rel_pos_h, h))
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, relative_position_table(self.rel_pos_w, w))
            # (B, heads, H*W, H*W): row (i, j), column (k, l)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nH * nW, window, window, C)`` after zero-padding H and W (bottom/right) to
    multiples of ``window``; also returns the padded size. The padded tokens take part in the attention as the
    official code has it (they are not masked)."""
    b, h, w, c = x.shape
    ph, pw = -h % window, -w % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.reshape(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Inverse of ``window_partition``: ``(B * nH * nW, window, window, C)`` -> ``(B, H, W, C)``."""
    hp, wp = padded
    c = windows.shape[-1]
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.reshape(b, hp // window, wp // window, window, window, c).transpose(2, 3).reshape(b, hp, wp, c)
    return x[:, : size[0], : size[1]]


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size > 0``: attention within non-overlapping windows, 0: global."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_eps: float = 1e-6, use_rel_pos: bool = True, window_size: int = 0,
                 input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        attn_size = (window_size, window_size) if window_size > 0 else input_size
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        if self.window_size > 0:
            size = (y.shape[1], y.shape[2])
            y, padded = window_partition(y, self.window_size)
            y = window_unpartition(self.attn(y), self.window_size, padded, size)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv: ``(B, 3, H, W)`` -> ``(B, H/p, W/p, C)`` (channels last)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """ViT image encoder: ``(B, 3, img_size, img_size)`` normalised and padded -> ``(B, out_chans, img/16, img/16)``.

    Blocks use ``window_size`` windows except those in ``global_attn_indexes``; an absolute positional embedding of
    the ``img_size / patch_size`` grid is added after the patch embedding.
    """

    def __init__(self, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, out_chans: int = 256,
                 qkv_bias: bool = True, norm_eps: float = 1e-6, use_abs_pos: bool = True, use_rel_pos: bool = True,
                 window_size: int = 14, global_attn_indexes: Sequence[int] = ()) -> None:
        super().__init__()
        bad = [i for i in global_attn_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f"global_attn_indexes {bad} outside the {depth} blocks")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim)) if use_abs_pos else None
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps, use_rel_pos,
                  0 if i in global_attn_indexes else window_size, (grid, grid))
            for i in range(depth)
        )
        self.neck = sam_neck(embed_dim, out_chans)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            if x.shape[1:3] != self.pos_embed.shape[1:3]:
                raise ValueError(f"ImageEncoderViT built for {self.img_size}x{self.img_size} inputs got a "
                                 f"{x.shape[1]}x{x.shape[2]} patch grid")
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
