"""The depth-wise vision Transformer's attention (Zhou, Loy, Dai; arXiv 2309.10713, Sec. 4.2 in our reading).

In the dynamic-convolution reading (:mod:`dynvit.dynamic_conv`) multi-head attention is a *grouped* 1x1 dynamic
convolution with one group per head: all ``C / heads`` channels of a head share one ``N x N`` attention map. A
depth-wise convolution has one kernel per channel; the corresponding depth-wise attention computes one attention
map per channel (``groups == C``) or per group of channels (``groups`` configurable; ``groups == heads`` gives back
multi-head attention's grouping). For a group ``g`` of ``c = C / groups`` channels::

    A_g = norm(Q_g K_g^T / sqrt(c))          (B, groups, N, N)
    out_g = A_g V_g                          (B, groups, N, c)

The paper's text was not available to us; our reading, kept configurable:

* ``groups``: number of attention maps (default: one per channel, the REFERENCES reading "per-channel attention").
* ``qkv``: how the kernels are generated. ``'linear'`` keeps ViT's dense ``C -> 3C`` projection (only the maps
  become depth-wise: same multiply-adds as multi-head attention, ``C / heads`` times more attention-map
  elements); ``'depthwise'`` generates queries, keys and values per channel (a learned per-channel scale and
  shift of the normalised tokens, i.e. a 1x1 depth-wise convolution), as the kernel generator of a depth-wise
  convolution does not mix channels. Channels are then mixed only by the output projection and the MLP, as in a
  depth-wise separable ConvNet block. This saves ``3 C^2`` parameters and ``3 N C^2`` multiply-adds per block and
  is our default for the ``dw`` experiments, being the reading under which "more efficient" can hold;
  ``python -m dynvit.complexity`` measures both.
* ``proj``: keep the output projection (the point-wise convolution after the depth-wise one). Default True.

Memory: one map per channel holds ``C / heads`` times more elements than multi-head attention (64x for DeiT-T), and
autograd would keep them all for the backward pass (about 0.7 GB per 224 px image for DeiT-S). ``chunk_groups``
computes the maps a few groups at a time and ``checkpoint`` recomputes them in the backward pass instead of
storing them (only ``q, k, v`` are kept), which is what makes the ImageNet ``dw`` experiments fit on a GPU; the
outputs and gradients are unchanged (tested).

With one channel per group the logit ``q_i k_j`` is a product of two scalars: under ``relu_ln`` over the keys a
positive query's magnitude cancels in the LayerNorm (the map depends on the query only through its sign), so the
``dw`` experiments use softmax, where the query magnitude acts as a per-position temperature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from .attention import Attention

QKV_MODES = ("linear", "depthwise")


class DepthwiseAttention(Attention):
    """Attention ``(B, N, C) -> (B, N, C)`` with one attention map per channel group.

    Args:
        dim: token width ``C``.
        num_tokens: sequence length ``N`` (for the ``relu_ln`` affine).
        groups: number of attention maps; ``C`` must be divisible by it. ``None``: ``C`` (one per channel);
            ``'heads'``: ``num_heads``.
        num_heads: used only by ``groups='heads'`` (the ViT passes its head count to every attention layer).
        qkv: ``'linear'`` (dense projection) or ``'depthwise'`` (per-channel scale and shift).
        proj: apply the output projection (a point-wise ``C -> C`` linear layer).
        chunk_groups: compute the attention maps this many groups at a time (``None``: all at once).
        checkpoint: in training, recompute the maps in the backward pass instead of storing them.
        norm, norm_axis, norm_affine, qkv_bias, attn_drop, proj_drop, form: as :class:`dynvit.attention.Attention`.
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        groups: int | str | None = None,
        qkv: str = "depthwise",
        proj: bool = True,
        norm: str = "softmax",
        norm_axis: str = "key",
        norm_affine: bool = True,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        form: str = "matmul",
        chunk_groups: int | None = None,
        checkpoint: bool = False,
        num_heads: int | None = None,
    ) -> None:
        if groups == "heads":
            if num_heads is None:
                raise ValueError("depth-wise attention groups='heads' needs num_heads")
            groups = num_heads
        groups = dim if groups is None else int(groups)
        if groups <= 0 or dim % groups:
            raise ValueError(f"depth-wise attention: dim={dim} is not divisible by groups={groups}")
        if qkv not in QKV_MODES:
            raise ValueError(f"depth-wise attention qkv must be one of {QKV_MODES}, got {qkv!r}")
        super().__init__(
            dim,
            groups,
            num_tokens,
            norm=norm,
            norm_axis=norm_axis,
            norm_affine=norm_affine,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            form=form,
        )
        self.groups = groups
        self.qkv_mode = qkv
        self.scale = 1.0 / math.sqrt(dim // groups)
        if qkv == "depthwise":
            # per-channel kernel generator: q, k, v = x * w + b channel by channel (1-D: no weight decay)
            self.qkv = None
            self.qkv_weight = nn.Parameter(torch.ones(3 * dim))
            self.qkv_shift = nn.Parameter(torch.zeros(3 * dim)) if qkv_bias else None
        if not proj:
            self.proj = nn.Identity()
        if chunk_groups is not None and int(chunk_groups) <= 0:
            raise ValueError(f"depth-wise attention chunk_groups must be positive, got {chunk_groups}")
        self.chunk_groups = None if chunk_groups is None else int(chunk_groups)
        self.checkpoint = bool(checkpoint)

    def qkv_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, N, C)`` -> queries, keys, values, each ``(B, groups, N, C / groups)``."""
        if self.qkv is not None:
            return super().qkv_heads(x)
        b, n, c = x.shape
        qkv = x.repeat(1, 1, 3) * self.qkv_weight
        if self.qkv_shift is not None:
            qkv = qkv + self.qkv_shift
        qkv = qkv.reshape(b, n, 3, self.groups, c // self.groups).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def _mix(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``attn_drop(norm(Q K^T * scale)) V`` for a slice of groups ``(B, g, N, c)``."""
        return self.attn_drop(self.attention_map(q, k)) @ v

    def forward_matmul(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_heads(x)
        step = self.chunk_groups or self.groups
        recompute = self.checkpoint and self.training and torch.is_grad_enabled()
        outs = []
        for start in range(0, self.groups, step):
            part = (q[:, start : start + step], k[:, start : start + step], v[:, start : start + step])
            outs.append(activation_checkpoint(self._mix, *part, use_reentrant=False) if recompute else self._mix(*part))
        return self.output(outs[0] if len(outs) == 1 else torch.cat(outs, dim=1))

    def attention_map(self, q: Tensor, k: Tensor) -> Tensor:
        if q.shape[-1] == 1:
            # one channel per map: the logits are outer products; broadcasting avoids N x 1 x N matmuls
            return self.attn_norm((q * self.scale) * k.transpose(-2, -1))
        return super().attention_map(q, k)

    def extra_repr(self) -> str:
        return (f"groups={self.groups}, qkv={self.qkv_mode!r}, form={self.form!r}, chunk_groups={self.chunk_groups}, "
                f"checkpoint={self.checkpoint}")
