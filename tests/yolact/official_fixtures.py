"""Helpers for the official-output fixtures (tests/fixtures/yolact, see its README): the seeded weights of the
generator, mirrored here, and loading a case."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolact"


def seeded_state_dict(manifest: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Same scheme as ``generate_official.seeded_state_dict`` (keys sorted, one generator)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(manifest):
        shape = tuple(manifest[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            out[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1 and key.endswith("weight"):
            out[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
        elif len(shape) == 1 and key.endswith("bias"):
            out[key] = torch.randn(shape, generator=g) * 0.1
        else:
            gain = 1.0 if key.startswith("backbone.") else 2.0
            out[key] = torch.randn(shape, generator=g) * math.sqrt(gain / math.prod(shape[1:]))
    return out


def load_case(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(manifest json, arrays)`` of one fixture case."""
    manifest = json.loads((FIXTURES / f"{name}.manifest.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return manifest, arrays


def seeded_input(size, seed: int) -> torch.Tensor:
    return torch.randn((1, 3, *size), generator=torch.Generator().manual_seed(seed))
