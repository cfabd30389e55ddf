"""Multi-head self-attention whose attention normalisation is selectable.

"Interpret Vision Transformers as ConvNets with Dynamic Convolutions" (Zhou, Loy, Dai; arXiv 2309.10713) argues
that the softmax over the attention logits can be replaced by ReLU followed by LayerNorm. The paper has no public
code; our reading, kept configurable:

* ``softmax``: the standard ``softmax(Q K^T / sqrt(d))`` over the key axis.
* ``relu_ln``: ``LayerNorm(ReLU(Q K^T / sqrt(d)))`` where the LayerNorm normalises, for every head and query, the
  vector of its ``N`` scores over the keys (``axis='key'``, default), or for every key the vector over the queries
  (``axis='query'``). With ``affine=True`` the LayerNorm has one learnable scale and shift per position along the
  normalised axis (so the number of tokens is fixed at construction, as for the position embedding).

Unlike softmax rows, ``relu_ln`` rows are zero-mean and unit-variance, not a convex combination: the values are
mixed with signed weights, which is what the dynamic-convolution reading allows.

Two forms of the same module (``form``), equal up to float rounding (tested to 1e-5):

* ``matmul``: the usual ``norm(Q K^T * scale) V`` with batched matrix products.
* ``dynamic_conv``: the paper's interpretation (Sec. 3). The queries of a head form a feature map of ``d`` channels
  at ``N`` positions; a first 1x1 convolution whose kernel is generated from the keys (``N`` output channels, one per
  key) gives the logits, the normalisation acts as the activation *across the channels* (hence ``axis='key'`` as the
  default: in the convolutional reading LayerNorm normalises over channels), and a second 1x1 convolution whose
  kernel is generated from the values maps the ``N`` channels back to ``d``. Heads are the groups of a grouped
  convolution; see :mod:`dynvit.dynamic_conv` and, for ``groups == channels``, :mod:`dynvit.depthwise`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dynamic_conv import attention_as_dynamic_convs

NORMALISATIONS = ("softmax", "relu_ln")
AXES = ("key", "query")
FORMS = ("matmul", "dynamic_conv")


class ReLULayerNorm(nn.Module):
    """``LayerNorm(ReLU(x))`` over one axis of an attention map ``(B, heads, N_query, N_key)``.

    Args:
        num_tokens: length of the normalised axis (needed only for the affine parameters).
        axis: ``'key'`` normalises each query's scores over the keys (last dim); ``'query'`` over the queries.
        affine: learn a per-position scale and shift along the normalised axis.
        eps: LayerNorm epsilon.
    """

    def __init__(self, num_tokens: int, axis: str = "key", affine: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if axis not in AXES:
            raise ValueError(f"relu_ln axis must be one of {AXES}, got {axis!r}")
        self.axis = axis
        self.eps = eps
        self.num_tokens = num_tokens
        if affine:
            self.weight = nn.Parameter(torch.ones(num_tokens))
            self.bias = nn.Parameter(torch.zeros(num_tokens))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, logits: Tensor) -> Tensor:
        x = F.relu(logits)
        if self.axis == "query":
            x = x.transpose(-1, -2)
        if self.weight is not None and x.shape[-1] != self.num_tokens:
            raise ValueError(
                f"relu_ln with affine=True was built for {self.num_tokens} tokens, got {x.shape[-1]}; "
                "use affine=False for a variable number of tokens"
            )
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        if self.axis == "query":
            x = x.transpose(-1, -2)
        return x

    def extra_repr(self) -> str:
        return f"axis={self.axis!r}, num_tokens={self.num_tokens}, affine={self.weight is not None}, eps={self.eps}"


class SoftmaxNorm(nn.Module):
    """The standard softmax over the key axis."""

    def forward(self, logits: Tensor) -> Tensor:
        return logits.softmax(dim=-1)


def build_attention_norm(
    norm: str, num_tokens: int, axis: str = "key", affine: bool = True, eps: float = 1e-6
) -> nn.Module:
    if norm == "softmax":
        return SoftmaxNorm()
    if norm == "relu_ln":
        return ReLULayerNorm(num_tokens, axis=axis, affine=affine, eps=eps)
    raise ValueError(f"attention normalisation must be one of {NORMALISATIONS}, got {norm!r}")


class Attention(nn.Module):
    """Multi-head self-attention ``(B, N, C) -> (B, N, C)`` with a selectable normalisation.

    Args:
        dim: token width ``C``.
        num_heads: number of heads; ``C`` must be divisible by it.
        num_tokens: sequence length ``N`` (for the ``relu_ln`` affine).
        norm: ``'softmax'`` or ``'relu_ln'``.
        norm_axis, norm_affine: see :class:`ReLULayerNorm`.
        qkv_bias: bias on the query/key/value projection (DeiT: True).
        attn_drop, proj_drop: dropout on the attention map and the output.
        form: ``'matmul'`` or ``'dynamic_conv'``: which of the two equal computations :meth:`forward` uses
            (both are always available as :meth:`forward_matmul` and :meth:`forward_dynamic_conv`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_tokens: int,
        norm: str = "softmax",
        norm_axis: str = "key",
        norm_affine: bool = True,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        form: str = "matmul",
    ) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"attention form must be one of {FORMS}, got {form!r}")
        self.form = form
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_norm = build_attention_norm(norm, num_tokens, axis=norm_axis, affine=norm_affine)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Split ``(B, N, C)`` into queries, keys and values, each ``(B, heads, N, C / heads)``."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def attention_map(self, q: Tensor, k: Tensor) -> Tensor:
        """Normalised attention ``(B, heads, N, N)``."""
        return self.attn_norm((q * self.scale) @ k.transpose(-2, -1))

    def output(self, out: Tensor) -> Tensor:
        """Per-head outputs ``(B, heads, N, C / heads)`` -> projected tokens ``(B, N, C)``."""
        b, _, n, _ = out.shape
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, -1)))

    def forward_matmul(self, x: Tensor) -> Tensor:
        """``norm(Q K^T * scale) V`` with matrix products: ``(B, N, C) -> (B, N, C)``."""
        q, k, v = self.qkv_heads(x)
        attn = self.attn_drop(self.attention_map(q, k))
        return self.output(attn @ v)

    def forward_dynamic_conv(self, x: Tensor) -> Tensor:
        """The same output computed as two 1x1 dynamic convolutions (kernels from keys, then values)."""
        q, k, v = self.qkv_heads(x)
        out = attention_as_dynamic_convs(
            q, k, v, scale=self.scale, activation=lambda logits: self.attn_drop(self.attn_norm(logits))
        )
        return self.output(out)

    def forward(self, x: Tensor) -> Tensor:
        if self.form == "dynamic_conv":
            return self.forward_dynamic_conv(x)
        return self.forward_matmul(x)
