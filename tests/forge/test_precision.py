"""forge.precision: one ``runtime.precision`` switch, honoured by the runner's train, val and test steps on CPU."""

from __future__ import annotations

import pytest
import torch
from mmengine.optim import OptimWrapper

from forge import precision
from forge.config import ConfigError, validate
from tests.forge.helpers import compose_cfg, fast_digits


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_capability(monkeypatch, native):
    monkeypatch.setattr(precision, "_cpu_bf16", lambda: native)
    assert precision.native_bf16("cpu") is native
    assert precision.resolve_precision("auto", "cpu") == (torch.bfloat16 if native else None)


def test_explicit_names_and_errors():
    assert precision.resolve_precision("fp32", "cpu") is None
    assert precision.resolve_precision("bf16", "cpu") == torch.bfloat16
    assert precision.resolve_precision("fp16", "cuda") == torch.float16
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device.*bf16, auto or fp32"):
        precision.resolve_precision("fp16", torch.device("cpu"))
    for bad in ("bfloat16", "amp", "float16", None):
        with pytest.raises(ValueError, match=f"runtime.precision={bad!r} is invalid: valid choices are fp32, bf16"):
            precision.resolve_precision(bad, "cpu")
    assert precision.native_bf16("meta") is False


def test_optim_wrapper_per_precision():
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    assert type(precision.build_optim_wrapper(opt, None, "cpu")) is OptimWrapper
    wrapper = precision.build_optim_wrapper(opt, torch.bfloat16, "cpu", accumulative_counts=2)
    assert isinstance(wrapper, precision.AutocastOptimWrapper) and wrapper._accumulative_counts == 2
    model = torch.nn.Linear(2, 2)
    with wrapper.optim_context(model):
        assert model(torch.ones(1, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="needs CUDA"):
        precision.build_optim_wrapper(opt, torch.float16, "cpu")


def test_float32_region_turns_autocast_off():
    layer = torch.nn.Linear(4, 4)
    with precision.autocast(torch.bfloat16, "cpu"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
        with precision.float32_region("cpu"):
            assert layer(torch.ones(1, 4)).dtype == torch.float32
    with precision.autocast(None, "cpu"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32


def test_validate_refuses_fp16_on_cpu_and_the_replaced_keys(tmp_path):
    cfg = compose_cfg(fast_digits(str(tmp_path), extra=["runtime.device=cpu", "runtime.precision=fp16"]))
    with pytest.raises(ConfigError, match="runtime.precision='fp16' needs a CUDA device"):
        validate(cfg)
    cfg = compose_cfg(fast_digits(str(tmp_path), extra=["runtime.precision=half"]))
    with pytest.raises(ConfigError, match="runtime.precision='half' is invalid: valid choices are fp32, bf16, fp16"):
        validate(cfg)
    for old in ("+runtime.amp=true", "+model.autocast_dtype=auto"):
        cfg = compose_cfg(fast_digits(str(tmp_path), extra=[old]))
        key = old[1:].split("=")[0]
        with pytest.raises(ConfigError, match=f"{key} was replaced by runtime.precision"):
            validate(cfg)


def _record_dtypes(runner) -> list[tuple[bool, torch.dtype]]:
    """(training, output dtype) of every call of the model's first Linear layer (inside the network)."""
    seen: list[tuple[bool, torch.dtype]] = []
    layer = next(m for m in runner.model.modules() if isinstance(m, torch.nn.Linear))
    layer.register_forward_hook(lambda mod, inp, out: seen.append((mod.training, out.dtype)))
    return seen


@pytest.mark.parametrize("name, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_runner_runs_train_val_and_test_steps_in_the_chosen_precision(tmp_path, name, dtype):
    from forge.runner import build_runner

    extra = ["schedule.by_epoch=false", "schedule.max_iters=2", "schedule.val_interval=2", "schedule.schedulers=[]",
             "runtime.checkpoint.interval=2", "+dataset.val.test_fraction=0.05", f"runtime.precision={name}",
             "runtime.device=cpu"]
    cfg = compose_cfg(fast_digits(str(tmp_path / "train"), extra=extra))
    runner = build_runner(cfg, str(tmp_path / "train"), mode="train")
    seen = _record_dtypes(runner)
    runner.train()
    assert {d for training, d in seen if training} == {dtype}, seen
    assert {d for training, d in seen if not training} == {dtype}, seen  # validation
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())  # optimizer steps stayed in float32
    assert {p.dtype for p in runner.model.parameters()} == {torch.float32}

    runner = build_runner(compose_cfg(fast_digits(str(tmp_path / "test"), extra=extra)), str(tmp_path / "test"),
                          mode="test")
    seen = _record_dtypes(runner)
    metrics = runner.test()
    assert seen and {d for _, d in seen} == {dtype} and "accuracy/top1" in metrics
