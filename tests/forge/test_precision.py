"""forge.precision: 'auto' picks bfloat16 only where the hardware has it."""

from __future__ import annotations

import pytest
import torch

from forge import precision


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_capability(monkeypatch, native):
    monkeypatch.setattr(precision, "_cpu_bf16", lambda: native)
    assert precision.native_bf16("cpu") is native
    assert precision.resolve_autocast_dtype("auto", "cpu") == (torch.bfloat16 if native else None)


def test_explicit_names_and_errors():
    assert precision.resolve_autocast_dtype(None, "cpu") is None
    assert precision.resolve_autocast_dtype("bfloat16", "cpu") == torch.bfloat16
    assert precision.resolve_autocast_dtype("float16", torch.device("cpu")) == torch.float16
    for bad in ("int8", "bf16", "nonsense"):
        with pytest.raises(ValueError, match=repr(bad)):
            precision.resolve_autocast_dtype(bad, "cpu")
    assert precision.native_bf16("meta") is False
