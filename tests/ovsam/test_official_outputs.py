"""Our SAM2CLIP, FPN and one-token mask decoder against the official modules' outputs on the same seeded weights
(``tests/fixtures/ovsam/official_outputs.pt``; README there)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ovsam import FPN, SAM2CLIP, OVSAMHead

FIXTURE = Path(__file__).parents[1] / "fixtures" / "ovsam" / "official_outputs.pt"


def seeded(module: nn.Module, seed: int) -> nn.Module:
    """The fixture generator's weights: randn x 0.1 per float tensor in sorted key order (1-d weights + 1)."""
    g = torch.Generator().manual_seed(seed)
    sd = module.state_dict()
    new = {}
    for k in sorted(sd):
        t = sd[k]
        if not t.is_floating_point():
            new[k] = t
            continue
        new[k] = torch.randn(t.shape, generator=g) * 0.1
        if k.endswith("weight") and t.dim() == 1:
            new[k] = 1 + new[k]
    module.load_state_dict(new)
    return module.eval()


def test_matches_official_outputs():
    ref = torch.load(FIXTURE, weights_only=True)
    chans = [8, 16, 32, 64]
    neck = seeded(SAM2CLIP(chans, embed_dim=64, input_size=256), 1)
    fpn = seeded(FPN(chans, 16), 2)
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(1, c, 256 // s, 256 // s, generator=g) for c, s in zip(chans, (4, 8, 16, 32))]
    head = OVSAMHead(clip_dim=8)
    holder = nn.Module()
    holder.mask_decoder, holder.label_token = head.mask_decoder, head.label_token
    seeded(holder, 4)
    with torch.no_grad():
        emb = neck(feats)
        outs = fpn(feats)
        sparse = torch.randn(2, 2, 256, generator=g)
        dense = torch.randn(2, 256, 16, 16, generator=g)
        pe = torch.randn(1, 256, 16, 16, generator=g)
        img = torch.randn(1, 256, 16, 16, generator=g)
        masks = head.predict_masks(img, pe, sparse, dense)
    torch.testing.assert_close(emb[:, :32], ref["neck"], rtol=1e-4, atol=1e-4)
    for ours, theirs in zip(outs, ref["fpn"]):
        torch.testing.assert_close(ours[:, :4], theirs, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(masks, ref["masks"], rtol=1e-4, atol=1e-4)
