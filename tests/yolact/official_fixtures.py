"""Helpers for the official-output fixtures (tests/fixtures/yolact, see its README): the seeded weights of the
generator and loading a case."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolact"


@functools.cache
def _generator_module():
    # the generator is a standalone script (it runs beside the official code, outside the project), so it is loaded
    # by path; importing it needs only torch and numpy
    spec = importlib.util.spec_from_file_location("yolact_generate_official", FIXTURES / "generate_official.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_state_dict(manifest: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """The generator's own ``seeded_state_dict`` (keys sorted, one generator), so both sides share one definition."""
    return _generator_module().seeded_state_dict(manifest, seed)


def load_case(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(manifest json, arrays)`` of one fixture case."""
    manifest = json.loads((FIXTURES / f"{name}.manifest.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return manifest, arrays


def seeded_input(size, seed: int) -> torch.Tensor:
    return torch.randn((1, 3, *size), generator=torch.Generator().manual_seed(seed))
