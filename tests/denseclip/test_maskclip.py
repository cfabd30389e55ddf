"""MaskCLIP dense features and logits: the official mmseg path (fixtures), slow per-token references, KS/PD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from denseclip.clip_loading import build_clip
from denseclip.maskclip import MaskCLIP, cosine_logits, resize_positional_embedding
from denseclip.refine import key_affinity, key_smooth, prompt_denoise, refine
from tests.denseclip.seeded import TINY_RN, TINY_VIT, seeded_state_dict, weights_checksum

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "denseclip"
CONFIGS = {"vit": TINY_VIT, "rn": TINY_RN}


@pytest.fixture(scope="module")
def official():
    with open(FIXTURES / "maskclip_official.json") as f:
        meta = json.load(f)
    return meta, dict(np.load(FIXTURES / "maskclip_official.npz"))


def seeded_clip(kind: str, seed: int):
    model = build_clip(CONFIGS[kind], quick_gelu=True)  # OpenAI-style weights, as the fixtures' clip package
    state = seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed)
    model.load_state_dict(state)
    return model, state


@pytest.fixture(scope="module")
def clips(official):
    meta, _ = official
    return {kind: seeded_clip(kind, meta["cases"][kind]["seed"]) for kind in CONFIGS}


def _image(arrays) -> torch.Tensor:
    return torch.from_numpy(arrays["image"]).permute(2, 0, 1)[None].float()


# ------------------------------------------------------------------------------------ official MaskCLIP fixtures
@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_seeded_weights_are_the_fixtures(kind, official, clips):
    meta, _ = official
    assert weights_checksum(clips[kind][1]) == meta["cases"][kind]["weights_checksum"]


@pytest.mark.parametrize("kind", ["vit", "rn"])
@pytest.mark.parametrize("ks,pd", [(0.0, 0.0), (0.0, 0.5), (0.0, 0.95), (1.0, 0.0), (1.0, 0.5), (1.0, 0.95)])
def test_feature_logits_match_official(kind, ks, pd, official, clips):
    meta, arrays = official
    emb = torch.from_numpy(arrays[f"{kind}_text_embeddings"])
    net = MaskCLIP(clips[kind][0], emb, key_smoothing=ks, prompt_denoising=pd)
    got = net.feature_logits(_image(arrays))
    ref = torch.from_numpy(arrays[f"{kind}_ks{ks:g}_pd{pd:g}_feature"])
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)


def test_fixtures_exercise_prompt_denoising(official):
    meta, _ = official
    for kind in CONFIGS:  # at the paper's 0.5, some classes suppressed and some kept — else PD is untested
        assert 0 < meta["cases"][kind]["pd_suppressed_classes"]["0.5"] < len(meta["classes"])


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_whole_and_slide_match_official(kind, official, clips):
    meta, arrays = official
    emb = torch.from_numpy(arrays[f"{kind}_text_embeddings"])
    x = _image(arrays)
    s = meta["subsample"]
    for ks, pd in ((0.0, 0.0), (1.0, 0.5)):
        got = MaskCLIP(clips[kind][0], emb, key_smoothing=ks, prompt_denoising=pd)(x)
        assert got.shape[-2:] == tuple(meta["image_hw"])
        ref = torch.from_numpy(arrays[f"{kind}_ks{ks:g}_pd{pd:g}_whole_s2"])
        torch.testing.assert_close(got[..., ::s, ::s], ref, atol=2e-5, rtol=1e-4)
    win = meta["slide"]
    got = MaskCLIP(clips[kind][0], emb)(x, mode="slide", crop=win["crop"], stride=win["stride"])
    torch.testing.assert_close(got[..., ::s, ::s], torch.from_numpy(arrays[f"{kind}_slide_s2"]), atol=2e-5, rtol=1e-4)


def test_clip_protocol_is_not_the_official_one(official, clips):
    """The official preprocessing (ImageNet mean/std, GELU, LN eps 1e-6) changes the logits: the fixture sees it."""
    _, arrays = official
    emb = torch.from_numpy(arrays["vit_text_embeddings"])
    got = MaskCLIP(clips["vit"][0], emb, protocol="clip").feature_logits(_image(arrays))
    assert (got - torch.from_numpy(arrays["vit_ks0_pd0_feature"])).abs().max() > 1e-3


# ----------------------------------------------------------------------------------- slow per-token references
def _hook_input(module, run, output: bool = False):
    """The first input (or output) tensor of ``module`` during ``run()``."""
    seen = {}
    handle = module.register_forward_hook(
        lambda m, inp, out: seen.setdefault("x", (out if output else inp[0]).detach().clone()))
    try:
        run()
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("protocol,size", [("clip", (64, 64)), ("official", (72, 100))])
def test_vit_feature_is_the_value_path_of_each_token(protocol, size, clips):
    model = clips["vit"][0]
    net = MaskCLIP(model, F.normalize(torch.randn(3, 32), dim=-1), protocol=protocol)
    x = net.normalize(torch.rand(1, 3, *size) * 255)
    blocks = net.visual.transformer.resblocks
    tokens = _hook_input(blocks[-2], lambda: net.dense_features(x), output=True)  # what enters the last block
    feats, keys = net.dense_features(x)
    blk, v = blocks[-1], net.visual
    w = blk.attn.embed_dim
    wv, bv = blk.attn.in_proj_weight[2 * w:], blk.attn.in_proj_bias[2 * w:]
    wk, bk = blk.attn.in_proj_weight[w:2 * w], blk.attn.in_proj_bias[w:2 * w]
    gh, gw = feats.shape[-2:]
    for t in range(gh * gw):
        tok = tokens[0, 1 + t]  # patch token t (row-major), one at a time
        y = blk.ln_1(tok)
        val = blk.attn.out_proj(wv @ y + bv) + tok
        val = val + blk.mlp(blk.ln_2(val))
        ref = v.ln_post(val) @ v.proj
        torch.testing.assert_close(feats[0, :, t // gw, t % gw], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(keys[0, t], blk.attn.out_proj(wk @ y + bk), atol=1e-5, rtol=1e-5)
    if protocol == "clip" and size == (64, 64):  # native grid: the tokens are exactly open_clip's own
        ref_tokens = _hook_input(model.visual.transformer.resblocks[-1], lambda: model.visual(x))  # its input
        torch.testing.assert_close(tokens, ref_tokens, atol=1e-5, rtol=1e-5)


def test_vit_value_path_equals_self_only_attention(clips):
    """Independent route: open_clip's own last block with attention restricted to each token itself."""
    model = clips["vit"][0]
    net = MaskCLIP(model, F.normalize(torch.randn(2, 32), dim=-1), protocol="clip")
    x = net.normalize(torch.rand(1, 3, 64, 64) * 255)
    tokens = _hook_input(net.visual.transformer.resblocks[-2], lambda: net.dense_features(x), output=True)
    n = tokens.shape[1]
    diag = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    out = net.visual.transformer.resblocks[-1](tokens, attn_mask=diag)
    ref = (net.visual.ln_post(out) @ net.visual.proj)[:, 1:]
    feats, _ = net.dense_features(x)
    torch.testing.assert_close(feats.flatten(2).transpose(1, 2), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["clearclip", "sclip"])
def test_vit_variants_against_sdpa(variant, clips):
    net = MaskCLIP(clips["vit"][0], F.normalize(torch.randn(2, 32), dim=-1), variant=variant, protocol="clip")
    x = net.normalize(torch.rand(1, 3, 48, 80) * 255)
    tokens = _hook_input(net.visual.transformer.resblocks[-2], lambda: net.dense_features(x), output=True)
    blk = net.visual.transformer.resblocks[-1]
    heads = blk.attn.num_heads
    q, k, v = F.linear(blk.ln_1(tokens), blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
    att = F.scaled_dot_product_attention(split(q), split(q), split(v))
    if variant == "sclip":
        att = att + F.scaled_dot_product_attention(split(k), split(k), split(v))
    out = blk.attn.out_proj(att.transpose(1, 2).flatten(2))
    if variant == "sclip":
        out = tokens + out
        out = out + blk.mlp(blk.ln_2(out))
    ref = (net.visual.ln_post(out) @ net.visual.proj)[:, 1:]
    feats, _ = net.dense_features(x)
    torch.testing.assert_close(feats.flatten(2).transpose(1, 2), ref, atol=1e-5, rtol=1e-5)


def test_resnet_feature_is_v_then_c_projection_per_position(clips):
    model = clips["rn"][0]
    net = MaskCLIP(model, F.normalize(torch.randn(2, 32), dim=-1))
    x = net.normalize(torch.rand(1, 3, 96, 128) * 255)
    x4 = model.visual.forward_intermediates(x, intermediates_only=True)["image_intermediates"][-1]  # open_clip's
    feats, keys = net.dense_features(x)
    pool = model.visual.attnpool
    assert feats.shape[-2:] == x4.shape[-2:] == (3, 4)
    for i in range(3):
        for j in range(4):
            col = x4[0, :, i, j]
            ref = pool.c_proj.weight @ (pool.v_proj.weight @ col + pool.v_proj.bias) + pool.c_proj.bias
            torch.testing.assert_close(feats[0, :, i, j], ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(keys[0, i * 4 + j], pool.k_proj(col), atol=1e-5, rtol=1e-5)


def test_positional_embedding_resize():
    pos = torch.randn(1 + 16, 8)
    assert resize_positional_embedding(pos, (4, 4)) is pos
    out = resize_positional_embedding(pos, (5, 8))
    assert out.shape == (41, 8) and torch.equal(out[0], pos[0])
    grid = pos[1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(5, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out[1:], ref.flatten(2)[0].T)
    with pytest.raises(ValueError, match="square"):
        resize_positional_embedding(torch.randn(1 + 15, 8), (4, 4))


def test_cosine_logits_normalise_features_only():
    feats = torch.tensor([[[[3.0]], [[4.0]]]])  # (1, 2, 1, 1), norm 5
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # used as given
    torch.testing.assert_close(cosine_logits(feats, emb).flatten(), torch.tensor([0.6, 1.6]))


def test_bad_arguments(clips):
    emb = F.normalize(torch.randn(2, 32), dim=-1)
    with pytest.raises(ValueError, match="ViT"):
        MaskCLIP(clips["rn"][0], emb, variant="sclip")
    with pytest.raises(ValueError, match=r"\(C, 32\)"):
        MaskCLIP(clips["vit"][0], torch.randn(2, 16))
    with pytest.raises(ValueError, match="variant"):
        MaskCLIP(clips["vit"][0], emb, variant="maskclip+")
    net = MaskCLIP(clips["vit"][0], emb)
    with pytest.raises(ValueError, match="mode"):
        net(torch.zeros(1, 3, 32, 32), mode="tiles")
    with pytest.raises(ValueError, match="RGB"):
        net(torch.zeros(1, 1, 32, 32))
    net.set_text_embeddings(F.normalize(torch.randn(5, 32), dim=-1))
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 5, 32, 32)


def test_the_given_clip_is_not_modified(clips):
    model = clips["vit"][0]
    before = type(model.visual.transformer.resblocks[0].mlp.gelu), model.visual.ln_post.eps
    MaskCLIP(model, F.normalize(torch.randn(2, 32), dim=-1))
    assert (type(model.visual.transformer.resblocks[0].mlp.gelu), model.visual.ln_post.eps) == before


# ----------------------------------------------------------------------------------- KS / PD on hand-built input
def test_prompt_denoising_by_hand():
    # positions (2x2): class 2 peaks at softmax(100 * (0.1, 0, 0.09)) = e^9 / (e^10 + 1 + e^9) = 0.2689 < 0.5
    logits = torch.tensor([[[0.1, 0.0], [0.0, 0.0]], [[0.0, 0.1], [0.1, 0.1]], [[0.09, 0.09], [0.0, 0.0]]])[None]
    out = prompt_denoise(logits, 0.5)
    assert torch.equal(out[0, 2], torch.full((2, 2), -100.0))
    assert torch.equal(out[0, :2], logits[0, :2])  # class 0 peaks at 0.731, class 1 at ~1
    assert torch.equal(prompt_denoise(logits, 0.25), logits)  # 0.2689 >= 0.25: nothing suppressed


def test_key_affinity_official_normalises_over_positions():
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]]])  # (1, HW=4, C=2)
    w = key_affinity(keys, "official")  # columns scaled to unit norm: [.707,.707,0,0] and [0,0,.447,.894]
    ref = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.2, 0.4], [0, 0, 0.4, 0.8]])
    torch.testing.assert_close(w[0], ref)
    cos = key_affinity(keys, "cosine")[0]  # per-key unit vectors: two blocks of ones
    torch.testing.assert_close(cos, torch.tensor([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="key_norm"):
        key_affinity(keys, "l1")


def test_key_smoothing_by_hand():
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]]])
    logits = torch.tensor([[[0.05, 0.0], [0.0, 0.2]], [[0.0, 0.0], [0.05, 0.0]]])[None]  # (1, C=2, 2, 2)
    p = torch.softmax(100 * logits, dim=1).flatten(2)[0].T  # (HW, C)
    w = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.2, 0.4], [0, 0, 0.4, 0.8]])
    # top confidences: softmax(5, 0) = 0.9933, 0.5, 0.9933 and softmax(20, 0), which is exactly 1.0 in float32
    assert p.amax(dim=1)[3] == 1.0
    for threshold, low in ((1.0, [True, True, True, False]), (0.99, [False, True, False, False])):
        out = key_smooth(logits, keys, threshold=threshold).flatten(2)[0].T
        ref = torch.where(torch.tensor(low)[:, None], w @ p, p)  # only positions below the threshold change
        torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="keys"):
        key_smooth(logits, keys[:, :3])


def test_refine_runs_prompt_denoising_first():
    torch.manual_seed(0)
    logits, keys = torch.randn(1, 4, 3, 3) * 0.05, torch.randn(1, 9, 6)
    out = refine(logits, keys, key_smoothing=1.0, prompt_denoising=0.5)
    torch.testing.assert_close(out, key_smooth(prompt_denoise(logits, 0.5), keys, 1.0))
    assert not torch.allclose(out, prompt_denoise(key_smooth(logits, keys, 1.0), 0.5))
    assert torch.equal(refine(logits, keys), logits)  # both off
    assert torch.equal(refine(logits, None, key_smoothing=1.0), logits)  # no keys: no KS
