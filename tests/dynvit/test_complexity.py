"""The complexity tool counts what torch's FLOP counter counts, and runs."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dynvit.attention import Attention
from dynvit.complexity import attention_map_elements, build, count_macs, count_params, main
from dynvit.depthwise import DepthwiseAttention
from dynvit.vit import VisionTransformer


@pytest.mark.parametrize(
    "attn_layer",
    [Attention, partial(Attention, norm="relu_ln"), partial(DepthwiseAttention, groups=16, qkv="linear"),
     partial(DepthwiseAttention, groups=8, qkv="linear", proj=False)],
)
def test_macs_match_torch_flop_counter(attn_layer):
    model = VisionTransformer(img_size=32, patch_size=8, num_classes=7, embed_dim=32, depth=2, num_heads=4,
                              attn_layer=attn_layer).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert count_macs(model) == counter.get_total_flops() // 2


def test_deit_tiny_numbers():
    softmax, dw = build("tiny", "softmax", 224), build("tiny", "dw", 224)
    assert count_params(softmax) == pytest.approx(5.72e6, rel=0.01)  # DeiT-T: 5.7 M parameters, 1.3 GFLOPs
    assert count_macs(softmax) == pytest.approx(1.25e9, rel=0.01)
    n, c = 197, 192
    # per-channel q/k/v instead of the dense projection, 12 blocks
    assert count_macs(softmax) - count_macs(dw) == 12 * (n * c * 3 * c - n * 3 * c)
    assert attention_map_elements(softmax) == 12 * 3 * n * n
    assert attention_map_elements(dw) == 12 * c * n * n
    assert build("tiny", "dw_heads", 224).blocks[0].attn.groups == 3


def test_cli_prints_a_table(capsys, tmp_path):
    out = tmp_path / "t.md"
    main(["--sizes", "tiny", "--img-size", "32", "--repeats", "1", "--markdown", str(out)])
    text = capsys.readouterr().out
    assert "| DeiT-T | dw |" in text and "| DeiT-T | softmax |" in text
    assert out.read_text().startswith("| model | variant |")


def test_cli_writes_its_doc_section(tmp_path):
    doc = tmp_path / "dynvit.md"
    doc.write_text("intro\n<!-- dynvit-complexity:begin -->\nstale\n<!-- dynvit-complexity:end -->\nanalysis\n")
    main(["--sizes", "tiny", "--variants", "softmax", "--img-size", "32", "--no-latency", "--doc", str(doc)])
    text = doc.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("analysis\n")
    assert "| DeiT-T | softmax |" in text and "Command: `python -m dynvit.complexity --sizes tiny" in text
