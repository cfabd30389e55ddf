"""The attention of dynvit: the two forms agree, depth-wise maps match a per-channel loop, relu_ln's axis."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dynvit import dynamic_conv
from dynvit.attention import Attention, ReLULayerNorm
from dynvit.depthwise import DepthwiseAttention
from dynvit.vit import VisionTransformer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynvit"
NORMS = [("softmax", "key"), ("relu_ln", "key"), ("relu_ln", "query")]


def _randomise(module: torch.nn.Module) -> None:
    """Perturb the 1-D parameters (biases, LayerNorm affine, per-channel q/k/v) so that no term can hide; the
    matrices keep PyTorch's default initialisation (realistic logit scales for a float32 comparison)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.fixture
def conv_calls(monkeypatch):
    """Counts the F.conv1d calls of dynvit.dynamic_conv: the dynamic-conv form must really convolve."""
    calls = []
    conv1d = F.conv1d

    def counting_conv1d(*args, **kwargs):
        calls.append(args[1].shape)
        return conv1d(*args, **kwargs)

    monkeypatch.setattr(dynamic_conv.F, "conv1d", counting_conv1d)
    return calls


@pytest.mark.parametrize("norm, axis", NORMS)
def test_attention_two_forms_agree(norm, axis, conv_calls):
    torch.manual_seed(0)
    attn = Attention(48, 4, num_tokens=10, norm=norm, norm_axis=axis).eval()
    _randomise(attn)
    x = torch.randn(3, 10, 48)
    a = attn.forward_matmul(x)
    b = attn.forward_dynamic_conv(x)
    assert len(conv_calls) == 2  # kernels from the keys, then from the values
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    attn.form = "dynamic_conv"
    torch.testing.assert_close(attn(x), a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm, axis", NORMS)
@pytest.mark.parametrize("groups, qkv", [(None, "depthwise"), (None, "linear"), (8, "linear"), (12, "depthwise")])
def test_depthwise_two_forms_agree(norm, axis, groups, qkv, conv_calls):
    attn = DepthwiseAttention(24, num_tokens=7, groups=groups, qkv=qkv, norm=norm, norm_axis=axis).eval()
    _randomise(attn)
    x = torch.randn(2, 7, 24)
    torch.testing.assert_close(attn.forward_dynamic_conv(x), attn.forward_matmul(x), atol=1e-5, rtol=0)
    assert len(conv_calls) == 2


def test_dynamic_conv_kernels_are_generated_per_sample():
    """The first convolution's kernel is the scaled keys: each sample is convolved with its own kernel."""
    b, g, n, c = 2, 3, 5, 4
    q, k, v = torch.randn(3, b, g, n, c).unbind(0)
    seen = []

    def identity(logits):
        seen.append(logits)
        return logits

    out = dynamic_conv.attention_as_dynamic_convs(q, k, v, scale=0.5, activation=identity)
    torch.testing.assert_close(seen[0], 0.5 * q @ k.transpose(-2, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, (0.5 * q @ k.transpose(-2, -1)) @ v, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="do not fit"):
        dynamic_conv.dynamic_conv1x1(torch.randn(2, 6, 5), torch.randn(2, 4, 4), groups=2)


def _slow_depthwise(attn: DepthwiseAttention, x: torch.Tensor) -> torch.Tensor:
    """Reference: loop over samples and channel groups, one attention map per group, plain softmax/LayerNorm."""
    b, n, c = x.shape
    g = attn.groups
    cg = c // g
    if attn.qkv is not None:
        qkv = attn.qkv(x)
    else:
        qkv = x.repeat(1, 1, 3) * attn.qkv_weight + attn.qkv_shift
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    out = torch.empty(b, n, c)
    for s in range(b):
        for grp in range(g):
            ch = slice(grp * cg, (grp + 1) * cg)
            logits = q[s, :, ch] @ k[s, :, ch].T / math.sqrt(cg)  # (N_query, N_key)
            if isinstance(attn.attn_norm, ReLULayerNorm):
                a = torch.relu(logits)
                a = (a - a.mean(-1, keepdim=True)) / torch.sqrt(a.var(-1, unbiased=False, keepdim=True) + 1e-6)
                a = a * attn.attn_norm.weight + attn.attn_norm.bias
            else:
                a = torch.softmax(logits, dim=-1)
            out[s, :, ch] = a @ v[s, :, ch]
    return attn.proj(out)


@pytest.mark.parametrize("norm", ["softmax", "relu_ln"])
@pytest.mark.parametrize("groups, qkv", [(None, "depthwise"), (None, "linear"), (6, "linear")])
def test_depthwise_matches_per_channel_loop(norm, groups, qkv):
    attn = DepthwiseAttention(12, num_tokens=6, groups=groups, qkv=qkv, norm=norm).eval()
    _randomise(attn)
    x = torch.randn(2, 6, 12)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _slow_depthwise(attn, x), atol=1e-5, rtol=0)
    assert attn.num_heads == (12 if groups is None else groups)


def test_depthwise_with_heads_groups_is_multi_head_attention():
    """groups == heads with a linear kernel generator is exactly multi-head attention (same parameters)."""
    mhsa = Attention(16, 4, num_tokens=5).eval()
    dw = DepthwiseAttention(16, num_tokens=5, groups=4, qkv="linear").eval()
    _randomise(mhsa)
    dw.load_state_dict(mhsa.state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(dw(x), mhsa(x), atol=1e-6, rtol=0)


def test_depthwise_bad_arguments():
    with pytest.raises(ValueError, match="not divisible by groups=5"):
        DepthwiseAttention(12, num_tokens=4, groups=5)
    with pytest.raises(ValueError, match="qkv must be one of"):
        DepthwiseAttention(12, num_tokens=4, qkv="conv")
    with pytest.raises(ValueError, match="attention form must be one of"):
        Attention(12, 3, num_tokens=4, form="fft")
    with pytest.raises(TypeError, match="attn_layer must be a class or partial"):
        VisionTransformer(img_size=8, patch_size=4, attn_layer="depthwise")
    with pytest.raises(ValueError, match="groups='heads' needs num_heads"):
        DepthwiseAttention(12, num_tokens=4, groups="heads")


@pytest.mark.parametrize("axis, dim", [("key", -1), ("query", -2)])
def test_relu_ln_normalises_over_the_stated_axis(axis, dim):
    norm = ReLULayerNorm(num_tokens=9, axis=axis, affine=False)
    logits = torch.randn(2, 3, 9, 9) * 3 + 0.5
    out = norm(logits)
    # zero mean, unit variance along the stated axis ...
    torch.testing.assert_close(out.mean(dim), torch.zeros_like(out.mean(dim)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim, unbiased=False), torch.ones_like(out.mean(dim)), atol=1e-3, rtol=0)
    # ... and not along the other one
    other = -2 if dim == -1 else -1
    assert out.mean(other).abs().max() > 0.05
    # the ReLU comes first: negative logits are all equal to the normalised zero
    relu = torch.relu(logits)
    expected = (relu - relu.mean(dim, keepdim=True)) / torch.sqrt(relu.var(dim, unbiased=False, keepdim=True) + 1e-6)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_relu_ln_affine_is_per_position_along_the_axis():
    norm = ReLULayerNorm(num_tokens=4, axis="query", affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    logits = torch.randn(1, 1, 4, 4)
    plain = ReLULayerNorm(num_tokens=4, axis="query", affine=False)(logits)
    expected = plain * norm.weight[:, None] + norm.bias[:, None]  # indexed by the query
    torch.testing.assert_close(norm(logits), expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="built for 4 tokens, got 5"):
        norm(torch.randn(1, 1, 5, 5))


@pytest.mark.parametrize(
    "attn_layer",
    [partial(Attention, norm="softmax"), partial(Attention, norm="relu_ln"), DepthwiseAttention,
     partial(DepthwiseAttention, groups=8, qkv="linear", norm="relu_ln", proj=False)],
)
def test_vit_forms_agree_and_train(attn_layer):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                              num_heads=4, mlp_ratio=2.0, attn_layer=attn_layer).eval()
    x = torch.randn(4, 1, 16, 16)
    ref = model(x)
    model.set_attn_form("dynamic_conv")
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)
    model.train()
    model(x).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_depthwise_vit_is_smaller():
    sizes = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    mhsa = sum(p.numel() for p in VisionTransformer(**sizes).parameters())
    dw = sum(p.numel() for p in VisionTransformer(attn_layer=DepthwiseAttention, **sizes).parameters())
    # the dense q/k/v projection (3 C^2 + 3 C per block) becomes a per-channel scale and shift (6 C)
    assert mhsa - dw == 2 * (3 * 32 * 32 + 3 * 32 - 6 * 32)


@pytest.mark.parametrize("chunk, recompute", [(4, False), (5, True), (None, True)])
def test_depthwise_chunks_and_checkpoint_change_nothing(chunk, recompute):
    torch.manual_seed(0)
    ref = DepthwiseAttention(12, num_tokens=6, norm="relu_ln")
    _randomise(ref)
    mem = DepthwiseAttention(12, num_tokens=6, norm="relu_ln", chunk_groups=chunk, checkpoint=recompute)
    mem.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 12)
    grads = []
    for module in (ref, mem):
        module.train()
        xi = x.clone().requires_grad_(True)
        out = module(xi)
        out.pow(2).sum().backward()
        grads.append((out.detach(), xi.grad, [p.grad for p in module.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1][2], grads[0][2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# the attention options as the eleven VisionTransformer flags spelt them before attn_layer (fixture keys)
_FLAG_TO_OPTION = {"attn_norm": "norm", "attn_norm_axis": "norm_axis", "attn_groups": "groups",
                   "attn_qkv": "qkv", "attn_proj": "proj", "attn_chunk_groups": "chunk_groups"}


@pytest.mark.parametrize("case", ["mhsa_softmax", "mhsa_relu_ln_query", "dw_depthwise", "dw_linear_g8_relu_ln_noproj"])
def test_attn_layer_keeps_keys_and_outputs(case):
    """One attention constructor builds the same modules as the old per-flag arguments: keys, shapes, logits."""
    ref = json.loads((FIXTURES / "vit_before_attn_layer.json").read_text())[case]
    flags = dict(ref["kwargs"])
    cls = DepthwiseAttention if flags.pop("attn_type", "mhsa") == "depthwise" else Attention
    attn_layer = partial(cls, **{_FLAG_TO_OPTION[k]: v for k, v in flags.items()})
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=32, depth=2,
                              num_heads=4, mlp_ratio=2.0, attn_layer=attn_layer).eval()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == ref["state_dict"]
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.tensor(ref["logits"]), atol=1e-6, rtol=0)
