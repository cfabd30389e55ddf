"""Tiny CLIP configs and seeded weights shared by the denseclip tests and the fixture generator.

The weights are a pure function of (key shapes, seed) — ``torch.randn`` from one CPU generator over the keys in
sorted order — so the generator (run outside the repository against the official code) and the tests build the
very same tensors without any weight file being committed. ``weights_checksum`` guards against a torch release
that changes its random stream (the fixture records the checksum)."""

from __future__ import annotations

import hashlib

import torch

#: Tiny ViT CLIP: 2 blocks of width 128 (2 heads of 64), patch 16, native 64 px (4x4 grid), embed 32;
#: text tower 1 block of width 64 with the real vocabulary (the BPE tokenizer's ids).
TINY_VIT = dict(embed_dim=32, vision_cfg=dict(image_size=64, layers=2, width=128, patch_size=16),
                text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1))
#: Tiny ResNet CLIP: one bottleneck per stage, width 8 (layer4 has 256 channels, 4 attention-pool heads).
TINY_RN = dict(embed_dim=32, vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8, patch_size=None),
               text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1))


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic float32 weights of O(1) activations for a CLIP's ``{key: shape}``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.zeros(shape, dtype=torch.long)
            continue
        r = torch.randn(shape, generator=g)
        if leaf == "running_var":
            t = 0.5 + r.abs()
        elif leaf == "running_mean":
            t = 0.1 * r
        elif leaf == "weight" and len(shape) == 1:  # BatchNorm / LayerNorm scales
            t = 1.0 + 0.1 * r
        elif leaf == "bias" or len(shape) <= 1:
            t = 0.02 * r if leaf == "bias" else 0.1 * r
        elif key.endswith(("proj", "text_projection")) and len(shape) == 2:  # used as x @ proj
            t = r * shape[0] ** -0.5
        else:
            fan_in = max(1, r[0].numel())
            t = r * fan_in ** -0.5
        out[key] = t.float()
    return out


def weights_checksum(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
