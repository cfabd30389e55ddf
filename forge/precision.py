"""One precision switch for every model: ``runtime.precision: fp32 | bf16 | fp16 | auto``.

The runner applies it around the model, on CPU and CUDA alike: training steps run their forward pass (data
preprocessor, model, loss) under ``torch.autocast`` (:func:`build_optim_wrapper`), validation and test steps too
(:class:`AutocastValLoop`, :class:`AutocastTestLoop`); the backward pass and the evaluators stay outside. A model
keeps parts in float32 with :func:`float32_region` (YOLACT: its loss and post-processing).

``fp32``  no autocast.
``bf16``  bfloat16 autocast; no loss scaling (bfloat16 has float32's exponent range).
``fp16``  float16 autocast with dynamic loss scaling (mmengine's ``AmpOptimWrapper``); CUDA only: CPU float16
          is emulated and slower than float32, so it is refused rather than silently replaced.
``auto``  bfloat16 where the device computes it natively (CPU: AVX512-BF16 or AMX; CUDA: compute capability >= 8.0),
          float32 elsewhere: emulated bfloat16 is slower than float32. Never float16 (it needs loss scaling and can
          overflow, so it is an explicit choice).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import TestLoop, ValLoop

from .config import PRECISIONS

__all__ = [
    "PRECISIONS", "native_bf16", "resolve_precision", "autocast", "float32_region", "AutocastOptimWrapper",
    "build_optim_wrapper", "AutocastValLoop", "AutocastTestLoop",
]


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


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``: None for float32 (no autocast).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`, or is ``'fp16'`` on a device other than CUDA.
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"runtime.precision={precision!r} is invalid: valid choices are {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError(f"runtime.precision='fp16' needs a CUDA device (the run uses {device.type}, where "
                             f"float16 is emulated): use runtime.precision=bf16, auto or fp32")
        return torch.float16
    return torch.bfloat16 if native_bf16(device) else None


def autocast(dtype: torch.dtype | None, device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, dtype)``, or nothing for ``dtype=None`` (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def float32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off: what must stay in float32 whatever ``runtime.precision`` (losses, post-processing). Inputs
    computed under autocast may be reduced-precision tensors: cast them with ``.float()``."""
    return torch.autocast(device_type, enabled=False)


class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward context (``optim_context``: preprocessor, model, loss) runs under
    ``torch.autocast(device_type, dtype)``; for bfloat16, which needs no loss scaling, on CPU and CUDA (mmengine's
    ``AmpOptimWrapper`` is CUDA-only and always scales)."""

    def __init__(self, dtype: torch.dtype, device_type: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype, self.device_type = dtype, device_type

    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.cast_dtype):
            yield


def build_optim_wrapper(optimizer: torch.optim.Optimizer, dtype: torch.dtype | None, device_type: str,
                        **kwargs) -> OptimWrapper:
    """The optimizer wrapper for ``dtype`` (from :func:`resolve_precision`): float32 ``OptimWrapper``, bfloat16
    :class:`AutocastOptimWrapper`, float16 ``AmpOptimWrapper`` (CUDA, dynamic loss scaling). ``kwargs``: the
    wrapper's ``accumulative_counts``, ``clip_grad``."""
    if dtype is None:
        return OptimWrapper(optimizer=optimizer, **kwargs)
    if dtype == torch.bfloat16:
        return AutocastOptimWrapper(dtype, device_type, optimizer=optimizer, **kwargs)
    if device_type != "cuda":
        raise ValueError(f"{dtype} autocast needs CUDA, the run uses {device_type}")
    return AmpOptimWrapper(optimizer=optimizer, dtype=dtype, loss_scale="dynamic", **kwargs)


def _run_step(loop, step: str, idx: int, data_batch, hook: str, losses: str) -> None:
    """One validation/test iteration: the model's ``step`` under the loop's autocast, then the evaluator."""
    from mmengine.runner.loops import _update_losses

    loop.runner.call_hook(f"before_{hook}_iter", batch_idx=idx, data_batch=data_batch)
    with autocast(loop.cast_dtype, loop.device_type):
        outputs = getattr(loop.runner.model, step)(data_batch)
    outputs, running = _update_losses(outputs, getattr(loop, losses))
    setattr(loop, losses, running)
    loop.evaluator.process(data_samples=outputs, data_batch=data_batch)
    loop.runner.call_hook(f"after_{hook}_iter", batch_idx=idx, data_batch=data_batch, outputs=outputs)


class AutocastValLoop(ValLoop):
    """mmengine's ``ValLoop`` whose ``val_step`` runs under ``torch.autocast(device_type, dtype)`` (its own
    ``fp16`` switch picks float16 on CUDA and bfloat16 on CPU by itself); the evaluator stays outside."""

    def __init__(self, runner, dataloader, evaluator, dtype: torch.dtype | None = None,
                 device_type: str = "cpu") -> None:
        super().__init__(runner, dataloader, evaluator)
        self.cast_dtype, self.device_type = dtype, device_type

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch) -> None:
        _run_step(self, "val_step", idx, data_batch, "val", "val_loss")


class AutocastTestLoop(TestLoop):
    """mmengine's ``TestLoop`` with the autocast of :class:`AutocastValLoop`."""

    def __init__(self, runner, dataloader, evaluator, dtype: torch.dtype | None = None,
                 device_type: str = "cpu") -> None:
        super().__init__(runner, dataloader, evaluator)
        self.cast_dtype, self.device_type = dtype, device_type

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch) -> None:
        _run_step(self, "test_step", idx, data_batch, "test", "test_loss")
