"""A DeiT-style Vision Transformer built from :class:`dynvit.attention.Attention`.

DeiT sizes (Touvron et al. 2021): tiny 192/12/3, small 384/12/6, base 768/12/12 (width/depth/heads), patch 16 at
224 px, MLP ratio 4, LayerNorm eps 1e-6, a class token and learned position embeddings.

The paper's variants are one constructor argument, ``attn_layer``: the attention class of every block, or a
``functools.partial`` of it holding the variant's options (as segment-anything's and timm's ViTs take their
``norm_layer`` and ``act_layer``):
:class:`dynvit.attention.Attention` (``norm``: ``softmax`` | ``relu_ln``; ``form``: ``matmul`` | ``dynamic_conv``,
the same numbers computed as two 1x1 dynamic convolutions) or :class:`dynvit.depthwise.DepthwiseAttention`
(``groups``, ``qkv``, ``proj``, memory options).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .attention import FORMS, Attention

# attn_layer(dim, num_heads=, num_tokens=, attn_drop=, proj_drop=) -> module (B, N, C) -> (B, N, C)
AttnLayer = Callable[..., nn.Module]

DEIT_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p`` during training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``.

    ``attn_layer`` builds the token mixer: it is called as
    ``attn_layer(dim, num_heads=, num_tokens=, attn_drop=, proj_drop=)`` and must return a module
    ``(B, N, C) -> (B, N, C)`` (a class or a ``functools.partial`` of one holding the variant's own options).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_tokens: int,
        mlp_ratio: float = 4.0,
        attn_layer: AttnLayer = Attention,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn_layer(dim, num_heads=num_heads, num_tokens=num_tokens, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT classifier ``(B, in_chans, img_size, img_size) -> (B, num_classes)`` logits.

    Args:
        img_size, patch_size, in_chans: input geometry; ``img_size`` must be divisible by ``patch_size``.
        num_classes: classifier outputs.
        embed_dim, depth, num_heads, mlp_ratio: Transformer size (see ``DEIT_SIZES``).
        attn_layer: the attention constructor of every block (see :class:`Block`). The paper's variants are
            partials: ``partial(Attention, norm="relu_ln")`` (ReLU + LayerNorm, with ``norm_axis`` /
            ``norm_affine``), ``partial(DepthwiseAttention, groups=None, qkv="depthwise")`` (one map per channel
            group; ``num_heads`` is then used only by ``groups="heads"``); either with ``form="dynamic_conv"`` for
            the same numbers computed as two 1x1 dynamic convolutions. In a config: ``_partial_: true``.
        drop_rate, attn_drop_rate: dropout rates; drop_path_rate: stochastic depth, linearly increasing per block.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        attn_layer: AttnLayer = Attention,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not callable(attn_layer):
            raise TypeError(f"attn_layer must be a class or partial building the attention, got {attn_layer!r}")
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}")
        self.img_size = img_size
        self.num_patches = (img_size // patch_size) ** 2
        num_tokens = self.num_patches + 1
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                num_tokens,
                mlp_ratio,
                attn_layer=attn_layer,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay (DeiT: position embedding and class token)."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> class-token feature ``(B, embed_dim)``."""
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            raise ValueError(f"expected {self.img_size}x{self.img_size} input, got {tuple(x.shape[-2:])}")
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def set_attn_form(self, form: str) -> None:
        """Switch every block between the ``'matmul'`` and ``'dynamic_conv'`` computations (same parameters)."""
        if form not in FORMS:
            raise ValueError(f"attention form must be one of {FORMS}, got {form!r}")
        for block in self.blocks:
            block.attn.form = form
