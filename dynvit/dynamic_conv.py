"""Self-attention written as two 1x1 dynamic convolutions (Zhou, Loy, Dai; arXiv 2309.10713, Sec. 3).

A 1x1 convolution over a 1-D feature map of ``N`` positions is a per-position linear map of the channels. In a
*dynamic* convolution the kernel is generated from the input instead of being a learned constant. For one group
(a head, or one channel of the depth-wise ViT) with queries, keys and values ``Q, K, V`` of shape ``(N, c)``:

1. the queries are a feature map with ``c`` channels at ``N`` positions; the kernel generated from the keys,
   ``W1 = K * scale`` of shape ``(N_key, c)`` (one output channel per key), gives the logits map
   ``L = conv1x1(Q; W1)`` with ``N_key`` channels at every query position;
2. the normalisation (softmax, or the paper's ReLU + LayerNorm) is the activation, applied across those channels;
3. the kernel generated from the values, ``W2 = V^T`` of shape ``(c, N_key)``, maps the ``N_key`` channels back to
   ``c``: ``out = conv1x1(A; W2)``.

Multi-head attention is then a *grouped* dynamic convolution with one group per head, and the depth-wise ViT the
case ``groups == channels``. Here both convolutions really are ``F.conv1d`` calls with per-sample kernels (a batch
of ``B`` samples x ``G`` groups is one grouped convolution with ``B * G`` groups), so that the equivalence with the
matrix-product form is checked, not restated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def dynamic_conv1x1(x: Tensor, weight: Tensor, groups: int = 1) -> Tensor:
    """A 1x1 convolution with a different kernel for every sample.

    Args:
        x: feature maps ``(B, C_in, N)`` (``N`` positions).
        weight: per-sample kernels ``(B, C_out, C_in / groups)``.
        groups: channel groups inside each sample (``C_in`` and ``C_out`` divisible by it).

    Returns:
        ``(B, C_out, N)``.
    """
    b, c_in, n = x.shape
    if weight.shape[0] != b or weight.shape[2] * groups != c_in or weight.shape[1] % groups:
        raise ValueError(
            f"dynamic_conv1x1: kernels {tuple(weight.shape)} do not fit input {tuple(x.shape)} with groups={groups}"
        )
    c_out = weight.shape[1]
    out = F.conv1d(x.reshape(1, b * c_in, n), weight.reshape(b * c_out, c_in // groups, 1), groups=b * groups)
    return out.reshape(b, c_out, n)


def attention_as_dynamic_convs(
    q: Tensor, k: Tensor, v: Tensor, scale: float, activation: Callable[[Tensor], Tensor]
) -> Tensor:
    """Grouped attention ``activation(Q K^T * scale) V`` computed as two grouped 1x1 dynamic convolutions.

    Args:
        q, k, v: ``(B, G, N, c)``: ``G`` groups (heads, or channels for the depth-wise ViT) of ``c`` channels.
        scale: logit scale (``1 / sqrt(c)``).
        activation: maps logits ``(B, G, N_query, N_key)`` to the attention map of the same shape (the module's
            normalisation and attention dropout); in the convolutional reading it acts across the key channels.

    Returns:
        ``(B, G, N, c)``, equal to ``activation(q @ k.transpose(-2, -1) * scale) @ v``.
    """
    b, g, n, c = q.shape
    # the queries of every group as a feature map of c channels at N positions: (B, G*c, N)
    queries = q.transpose(-1, -2).reshape(b, g * c, n)
    # kernel generated from the keys: N_key output channels per group, c input channels -> (B, G*N_key, c)
    w1 = (k * scale).reshape(b, g * n, c)
    logits = dynamic_conv1x1(queries, w1, groups=g)  # (B, G*N_key, N_query)
    attn = activation(logits.reshape(b, g, n, n).transpose(-1, -2))  # (B, G, N_query, N_key)
    key_channels = attn.transpose(-1, -2).reshape(b, g * n, n)  # (B, G*N_key, N_query)
    # kernel generated from the values: c output channels per group, N_key input channels -> (B, G*c, N_key)
    w2 = v.transpose(-1, -2).reshape(b, g * c, n)
    out = dynamic_conv1x1(key_channels, w2, groups=g)  # (B, G*c, N_query)
    return out.reshape(b, g, c, n).transpose(-1, -2)
