"""Which reduced-precision dtype a device computes natively, for models that run under ``torch.autocast``.

Emulated bfloat16 (a CPU without AVX512-BF16/AMX) is slower than float32, so ``'auto'`` only picks bfloat16
where the hardware has it.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["native_bf16", "resolve_autocast_dtype"]


@functools.cache
def _cpu_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def native_bf16(device: torch.device | str) -> bool:
    """True if ``device`` has bfloat16 arithmetic in hardware (CPU: AVX512-BF16 or AMX; CUDA: compute >= 8.0)."""
    device = torch.device(device)
    if device.type == "cpu":
        return _cpu_bf16()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def resolve_autocast_dtype(name: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``name`` on ``device``: None -> None (float32), ``'auto'`` -> bfloat16 where
    :func:`native_bf16`, else None; any other name -> ``getattr(torch, name)``.

    Raises:
        ValueError: ``name`` is not None, ``'auto'`` or a torch floating dtype name.
    """
    if name is None:
        return None
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"autocast dtype must be None, 'auto' or a torch floating dtype name such as 'bfloat16', "
                         f"got {name!r}")
    return dtype
