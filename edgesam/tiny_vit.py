"""MobileSAM's image encoder: TinyViT-5M (Wu et al., 2022) at 1024, with SAM's neck (Zhang et al., 2023, "Faster
Segment Anything"). A conv stem (/4), one MBConv stage and three windowed-attention stages; the last patch merging
keeps the resolution, so the output grid is 1/16 of the input: ``(B, 3, 1024, 1024)`` -> ``(B, 256, 64, 64)``.

Parameter names follow ``mobile_sam`` (``patch_embed.seq``, ``layers.N.blocks.M``, ``layers.N.downsample``,
``neck``), including TinyViT's classifier ``norm_head`` / ``head``, which the released checkpoint carries but the
encoder never uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.common import Conv2dBN, sam_neck


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depth-wise, 1x1 project, + input, GELU after each and after the sum."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """1x1 conv, GELU, 3x3 depth-wise conv of ``stride``, GELU, 1x1 conv: ``(B, C, H, W)`` -> ``(B, C', H/s, W/s)``."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class Attention(nn.Module):
    """Window self-attention with pre-LayerNorm and a learnt bias per head and per absolute offset (|dy|, |dx|)
    between tokens of a ``resolution`` window (LeViT-style)."""

    def __init__(self, dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        rh, rw = resolution
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, rh * rw))
        ys, xs = torch.meshgrid(torch.arange(rh), torch.arange(rw), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        # offset (a, b) is column a * rw + b of attention_biases
        idx = (ys[:, None] - ys[None, :]).abs() * rw + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, C)`` tokens of one window (N = rh * rw) -> ``(B, N, C)``."""
        b, n, c = x.shape
        # the checkpoint's qkv layout is per head: [q_h | k_h | v_h]
        qkv = self.qkv(self.norm(x)).reshape(b, n, self.num_heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (heads, N, N)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias[None])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Pre-LayerNorm MLP (fc1, GELU, fc2)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded bottom/right to whole windows; the padding is not masked, as in the official
    code) + residual, a 3x3 depth-wise ``local_conv``, the MLP + residual. Works on ``(B, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        ph, pw = -h % ws, -w % ws
        y = F.pad(x, (0, 0, 0, pw, 0, ph)) if ph or pw else x
        nh, nw = (h + ph) // ws, (w + pw) // ws
        y = y.reshape(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        y = self.attn(y).reshape(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, nh * ws, nw * ws, c)
        x = x + y[:, :h, :w]
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on ``(B, C, H, W)``, then the patch merging."""

    def __init__(self, dim: int, depth: int, out_dim: int, stride: int, expand_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks, then (except the last stage) the patch merging; ``(B, C, H, W)`` in and out."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 out_dim: int | None, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window_size, mlp_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT encoder + SAM neck. Defaults are MobileSAM's (``build_sam_vit_t``): dims 64/128/160/320, depths
    2/2/6/2, heads 2/4/5/10, windows 7/7/14/7, merging strides 2/2/1."""

    def __init__(self, img_size: int = 1024, in_chans: int = 3, embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (2, 4, 5, 10),
                 window_sizes: Sequence[int] = (7, 7, 14, 7), merge_strides: Sequence[int] = (2, 2, 1),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0, num_classes: int = 1000,
                 out_chans: int = 256) -> None:
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes) == len(merge_strides) + 1:
            raise ValueError("embed_dims, depths, num_heads, window_sizes need one entry per stage and "
                             "merge_strides one per stage transition")
        self.img_size = img_size
        d0 = embed_dims[0]
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(Conv2dBN(in_chans, d0 // 2, 3, 2, 1), nn.GELU(),
                                             Conv2dBN(d0 // 2, d0, 3, 2, 1))
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            last = i == len(embed_dims) - 1
            out_dim = None if last else embed_dims[i + 1]
            stride = 1 if last else merge_strides[i]
            if i == 0:
                self.layers.append(ConvLayer(dim, depths[0], out_dim, stride, mbconv_expand_ratio))
            else:
                self.layers.append(BasicLayer(dim, depths[i], num_heads[i], window_sizes[i], mlp_ratio, out_dim,
                                              stride))
        # TinyViT's classifier: in the released checkpoint, unused by SAM
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = sam_neck(embed_dims[-1], out_chans)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, out_chans, S/16, S/16)`` (with the default strides)."""
        x = self.patch_embed.seq(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
