"""Module-level checks against slow, obvious versions: relative positions, window partition, TinyViT's offset
biases, RepViT's fuse(), prompt-encoder label conventions, decoder batching."""

from __future__ import annotations

import pytest
import torch

from edgesam.build import sam_from_encoder
from edgesam.common import Conv2dBN
from edgesam.image_encoder import ImageEncoderViT, relative_position_table, window_partition, window_unpartition
from edgesam.rep_vit import RepVGGDW, RepViT, make_divisible
from edgesam.tiny_vit import Attention as TinyAttention


def randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5


def test_relative_position_table_matches_loop():
    table = torch.randn(2 * 5 - 1, 3)
    got = relative_position_table(table, 5)
    for i in range(5):
        for j in range(5):
            assert torch.equal(got[i, j], table[i - j + 4])
    # a table learnt for 7 positions is resampled to 9 rows before indexing
    assert relative_position_table(torch.randn(13, 3), 5).shape == (5, 5, 3)


def test_window_partition_pads_and_round_trips():
    x = torch.randn(2, 10, 9, 4)
    windows, padded = window_partition(x, 4)
    assert padded == (12, 12) and windows.shape == (2 * 3 * 3, 4, 4, 4)
    assert torch.equal(windows[1], x[0, 0:4, 4:8])  # row-major windows
    assert torch.equal(windows[2, :, :1], x[0, 0:4, 8:9]) and windows[2, :, 1:].abs().sum() == 0  # zero padding
    assert torch.equal(window_unpartition(windows, 4, padded, (10, 9)), x)


def test_vit_window_and_global_blocks():
    enc = ImageEncoderViT(img_size=64, embed_dim=32, depth=3, num_heads=2, window_size=3, global_attn_indexes=(1,))
    assert [b.window_size for b in enc.blocks] == [3, 0, 3]
    assert enc.blocks[0].attn.rel_pos_h.shape == (5, 16) and enc.blocks[1].attn.rel_pos_h.shape == (7, 16)
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 256, 4, 4)
    with pytest.raises(ValueError, match="built for 64x64 inputs got a 8x8 patch grid"):
        enc(torch.randn(1, 3, 128, 128))
    with pytest.raises(ValueError, match=r"global_attn_indexes \[5\] outside the 3 blocks"):
        ImageEncoderViT(img_size=64, embed_dim=32, depth=3, num_heads=2, global_attn_indexes=(5,))


def test_tiny_vit_bias_index_is_the_absolute_offset():
    attn = TinyAttention(8, 2, (3, 4))
    idx = attn.attention_bias_idxs
    pts = [(y, x) for y in range(3) for x in range(4)]
    offsets = {}
    for a, p in enumerate(pts):
        for b, q in enumerate(pts):
            offsets.setdefault(int(idx[a, b]), set()).add((abs(p[0] - q[0]), abs(p[1] - q[1])))
    # one column of attention_biases per distinct |offset|, and every column used
    assert all(len(v) == 1 for v in offsets.values()) and sorted(offsets) == list(range(12))


def test_make_divisible_matches_timm():
    from timm.layers import make_divisible as timm_make_divisible

    for v in (12, 24, 48, 96, 10, 3.5, 100):
        assert make_divisible(v) == timm_make_divisible(v, 8, round_limit=0.0)


def test_conv_bn_and_repvgg_fuse():
    torch.manual_seed(0)
    block = RepVGGDW(6)
    randomise_bn(block)
    block.eval()
    x = torch.randn(2, 6, 9, 7)
    ref = block(x)
    block.fuse()
    assert isinstance(block.conv, torch.nn.Conv2d) and not hasattr(block, "conv1")
    torch.testing.assert_close(block(x), ref, atol=1e-5, rtol=1e-5)

    cbn = Conv2dBN(4, 5, 3, 2, 1)
    randomise_bn(cbn, 1)
    cbn.eval()
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(cbn.fused()(x), cbn(x), atol=1e-5, rtol=1e-5)


def test_rep_vit_fuse_keeps_outputs():
    torch.manual_seed(0)
    enc = RepViT(img_size=128)
    randomise_bn(enc)
    enc.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ref = enc.forward_features(x)
        enc.fuse()
        got = enc.forward_features(x)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, Conv2dBN)) for m in enc.modules())
    assert [tuple(got[k].shape[-2:]) for k in ("stem", "stage0", "stage1", "stage2", "stage3", "final")] == [
        (32, 32), (32, 32), (16, 16), (8, 8), (4, 4), (8, 8)]
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-4, rtol=1e-4, msg=k)


@pytest.fixture(scope="module")
def small_sam():
    torch.manual_seed(0)
    enc = ImageEncoderViT(img_size=128, embed_dim=32, depth=2, num_heads=2, window_size=4, global_attn_indexes=(1,))
    return sam_from_encoder(enc, 128).eval()


def test_prompt_labels(small_sam):
    pe = small_sam.prompt_encoder
    box = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    # box corners given as points with labels 2 / 3 (the official ONNX encoding) embed as the box
    as_points = pe.embed_points(box.reshape(1, 2, 2), torch.tensor([[2, 3]]), pad=False)
    torch.testing.assert_close(as_points, pe.embed_boxes(box))
    pts = torch.tensor([[[5.0, 5.0], [30.0, 40.0], [7.0, 8.0]]])
    emb = pe.embed_points(pts, torch.tensor([[1, -2, -1]]), pad=True)
    assert emb.shape == (1, 4, 256)
    assert emb[0, 1].abs().sum() == 0  # -2: ignored point, zero embedding
    torch.testing.assert_close(emb[0, 2], pe.not_a_point_embed.weight[0])
    torch.testing.assert_close(emb[0, 3], pe.not_a_point_embed.weight[0])  # padding token
    with pytest.raises(ValueError, match="prompts disagree on the batch size"):
        pe((pts, torch.ones(1, 3)), torch.zeros(2, 4), None)
    with pytest.raises(ValueError, match=r"mask input must be \(B, 1, 32, 32\)"):
        pe(None, None, torch.zeros(1, 1, 16, 16))


def test_decoder_per_prompt_embeddings_equal_shared(small_sam):
    """One embedding per prompt (batched training) equals one shared embedding (the predictor)."""
    emb = torch.randn(1, 256, 8, 8)
    boxes = torch.tensor([[10.0, 20.0, 60.0, 90.0], [0.0, 0.0, 128.0, 100.0]])
    with torch.no_grad():
        shared = small_sam.decode(emb, boxes=boxes, multimask_output=True)
        per = small_sam.decode(emb.expand(2, -1, -1, -1).clone(), boxes=boxes, multimask_output=True)
    assert shared[0].shape == (2, 3, 32, 32) and shared[1].shape == (2, 3)
    torch.testing.assert_close(per[0], shared[0])
    with pytest.raises(ValueError, match="3 image embeddings for 2 prompts"):
        small_sam.decode(torch.randn(3, 256, 8, 8), boxes=boxes)
