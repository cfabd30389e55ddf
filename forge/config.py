"""Validate, save and instantiate composed Hydra configs.

Hydra composes ``forge/configs/`` (it already rejects an unknown group option, listing the valid ones); this module
checks the values before anything is built, so that a wrong override fails in a second with a message naming the key,
the value and what is allowed, rather than an hour into a run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

ENGINES = ("runner", "fit")
DEVICES = ("auto", "cpu", "cuda")
LAUNCHERS = ("local", "torchrun", "slurm")
# dataset keys that name files or folders which must exist
PATH_KEYS = ("root", "data_root", "ann_file", "img_prefix", "path")
CONFIG_FILENAME = "config.yaml"


def autoscale_iters(iters: Any, *, _root_: DictConfig) -> int:
    """``${forge.autoscale_iters:N}``: an iteration count of a schedule written for ``schedule.base_batch_size``.

    With ``schedule.autoscale_iters: true`` it is ``N * base_batch_size / total_batch`` (floored, at least 1), where
    ``total_batch = batch_size * WORLD_SIZE * accumulative_counts`` (``WORLD_SIZE``/``SLURM_NTASKS`` from the
    environment, as set by torchrun/srun): the original YOLACT's ``--autoscale``, which divides ``max_iter`` and the
    LR steps by ``batch_size / 8`` while the runner multiplies the lr by it. Otherwise ``N`` unchanged.
    """
    schedule = _root_.get("schedule")
    n = int(iters)
    if schedule is None or not schedule.get("autoscale_iters", False):
        return n
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    total = int(schedule.batch_size) * world * int(schedule.get("accumulative_counts", 1))
    base = float(schedule.get("base_batch_size", total))
    return max(1, int(n * base / total))


def less_than(a: Any, b: Any) -> bool:
    """``${forge.lt:A,B}``: ``A < B`` as numbers, e.g. YOLACT's BN freezing below 6 images per GPU:
    ``freeze_bn: ${forge.lt:${schedule.batch_size},6}``."""
    try:
        return float(a) < float(b)
    except (TypeError, ValueError):
        raise ConfigError(f"${{forge.lt:{a},{b}}}: both arguments must be numbers") from None


if not OmegaConf.has_resolver("forge.autoscale_iters"):
    OmegaConf.register_new_resolver("forge.autoscale_iters", autoscale_iters)
if not OmegaConf.has_resolver("forge.lt"):
    OmegaConf.register_new_resolver("forge.lt", less_than)


class ConfigError(ValueError):
    """A composed config has a value that cannot work. The message names every key at fault."""


class _Missing:
    """A mandatory value (``???``) that was not given, or an interpolation that points at one."""


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, DictConfig):
        for key in node.keys():
            try:
                value = _Missing() if OmegaConf.is_missing(node, key) else node[key]
            except (MissingMandatoryValue, InterpolationResolutionError):
                value = _Missing()
            if not isinstance(value, _Missing):
                yield from _walk(value, f"{prefix}.{key}")
            yield f"{prefix}.{key}", value
    elif isinstance(node, ListConfig):
        for i, value in enumerate(node):
            yield from _walk(value, f"{prefix}[{i}]")


def _number(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _check_positive(cfg: DictConfig, key: str, errors: list[str], integer: bool = False, allow_zero: bool = False):
    value = _number(cfg, key)
    if value is None:
        return
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        errors.append(f"{key}={value!r} is invalid: must be {kind} {bound}")


def _check_choice(cfg: DictConfig, key: str, choices: tuple, errors: list[str]) -> None:
    value = _number(cfg, key)
    if value is not None and value not in choices:
        errors.append(f"{key}={value!r} is invalid: valid choices are {', '.join(map(str, choices))}")


PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # forge.precision (not imported here: it imports mmengine)


def _check_precision(cfg: DictConfig, errors: list[str]) -> None:
    """``runtime.precision`` is a known name, fp16 only with CUDA; the keys it replaced are refused by name."""
    for old in ("runtime.amp", "model.autocast_dtype"):
        if OmegaConf.select(cfg, old, default=None) not in (None, False):
            errors.append(f"{old} was replaced by runtime.precision (fp32 | bf16 | fp16 | auto; see "
                          f"forge/configs/runtime/default.yaml): remove {old} and set runtime.precision")
    precision = OmegaConf.select(cfg, "runtime.precision", default="fp32")
    if precision not in PRECISIONS:
        errors.append(f"runtime.precision={precision!r} is invalid: valid choices are {', '.join(PRECISIONS)}")
    elif precision == "fp16":
        import torch

        if not torch.cuda.is_available() or OmegaConf.select(cfg, "runtime.device", default="auto") == "cpu":
            errors.append("runtime.precision='fp16' needs a CUDA device (float16 on a CPU is emulated, slower than "
                          "float32): use runtime.precision=bf16, auto or fp32")


# dataset splits each command reads (a test machine may hold only the evaluation data)
_SPLITS = {"train": ("train", "val", "evaluator"), "test": ("test", "val", "evaluator"), "fit": ()}


def validate(cfg: DictConfig, mode: str = "train") -> None:
    """Raise :class:`ConfigError` listing every problem found in a composed config.

    ``mode`` (``'train'``, ``'test'``) selects which dataset splits must exist on disk.
    """
    errors: list[str] = []
    _check_choice(cfg, "engine", ENGINES, errors)
    _check_choice(cfg, "runtime.device", DEVICES, errors)
    _check_choice(cfg, "launcher.name", LAUNCHERS, errors)
    seed = _number(cfg, "seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        errors.append(f"seed={seed!r} is invalid: must be a non-negative integer")
    if OmegaConf.select(cfg, "runtime.device", default="auto") == "cuda":
        import torch

        if not torch.cuda.is_available():
            errors.append("runtime.device='cuda' is invalid: no CUDA device is available (use auto or cpu)")

    if cfg.get("engine", "runner") == "runner" and cfg.get("schedule") is not None:
        for key in ("schedule.lr", "schedule.base_batch_size"):
            _check_positive(cfg, key, errors)
        for key in ("schedule.batch_size", "schedule.val_interval", "schedule.accumulative_counts"):
            _check_positive(cfg, key, errors, integer=True)
        for key in ("schedule.max_epochs", "schedule.max_iters"):
            _check_positive(cfg, key, errors, integer=True)
        _check_positive(cfg, "schedule.num_workers", errors, integer=True, allow_zero=True)
        _check_positive(cfg, "schedule.optimizer.weight_decay", errors, allow_zero=True)
        by_epoch = _number(cfg, "schedule.by_epoch")
        length_key = "schedule.max_epochs" if by_epoch else "schedule.max_iters"
        if by_epoch is not None and _number(cfg, length_key) is None:
            errors.append(f"{length_key} must be set when schedule.by_epoch={by_epoch}")
        _check_positive(cfg, "runtime.checkpoint.interval", errors, integer=True)
        _check_positive(cfg, "runtime.log_interval", errors, integer=True)

    dataset = cfg.get("dataset")
    if isinstance(dataset, DictConfig):
        used = _SPLITS.get(mode if cfg.get("engine", "runner") == "runner" else "fit", ())
        missing_pipeline: list[str] = []
        for key, value in _walk(dataset, "dataset"):
            parts = key.split(".")
            split = parts[1].split("[", 1)[0] if len(parts) > 2 else None
            if split in ("train", "val", "test", "evaluator") and split not in used:
                continue
            if isinstance(value, _Missing):
                if parts[-1] == "pipeline" and cfg.get("pipeline") is None and split in used:
                    missing_pipeline.append(key)
                elif len(parts) == 2 or split in used:
                    errors.append(f"{key} is required: set it on the command line, e.g. {key}=...")
                continue
            leaf = key.rsplit(".", 1)[-1]
            if leaf in PATH_KEYS and isinstance(value, str) and value and not os.path.exists(value):
                errors.append(f"{key}={value!r} does not exist (check the path or override it, e.g. {key}=/path)")
        if missing_pipeline:  # the dataset reads its transforms from the pipeline group, and none was selected
            errors.append(f"{', '.join(missing_pipeline)} {'is' if len(missing_pipeline) == 1 else 'are'} required: "
                          "select the augmentation with pipeline=<name> (available: "
                          + (", ".join(pipeline_choices()) or "none found") + ")")

    _check_precision(cfg, errors)

    top_missing = [e for e in errors if e.count(".") == 1 and "is required" in e]
    if top_missing:  # interpolations of a missing value would repeat the same message
        errors = [e for e in errors if "is required" not in e or e in top_missing]

    resume = cfg.get("resume", False)
    if resume not in (None, False, True, "auto") and not (isinstance(resume, str) and os.path.isfile(resume)):
        errors.append(f"resume={resume!r} is invalid: use auto, false, or the path of an existing checkpoint")
    load_from = cfg.get("load_from")
    if load_from and not os.path.isfile(load_from):
        errors.append(f"load_from={load_from!r} does not exist")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def pipeline_choices() -> list[str]:
    """Options of the ``pipeline`` group: the packaged ``forge/configs/pipeline`` and the folders of
    ``FORGE_CONFIG_DIR`` (``os.pathsep``-separated), as ``a/b`` names, sorted."""
    roots = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")]
    roots += [d for d in os.environ.get("FORGE_CONFIG_DIR", "").split(os.pathsep) if d]
    out = set()
    for root_dir in roots:
        base = os.path.join(root_dir, "pipeline")
        for folder, _, files in os.walk(base):
            out.update(os.path.relpath(os.path.join(folder, f), base)[: -len(".yaml")] for f in files
                       if f.endswith(".yaml"))
    return sorted(out)


def save_config(cfg: DictConfig, work_dir: str) -> str:
    """Write the fully resolved config to ``work_dir/config.yaml`` (what ``forge-test config=...`` rebuilds from)."""
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, CONFIG_FILENAME)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    os.replace(tmp, path)
    return path


def load_config(path: str) -> DictConfig:
    """Read a config saved by :func:`save_config`."""
    if os.path.isdir(path):
        path = os.path.join(path, CONFIG_FILENAME)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig) or "model" not in cfg:
        raise ConfigError(f"{path!r} is not a saved paperforge config (no 'model' key)")
    return cfg


def to_plain(node: Any) -> Any:
    """OmegaConf containers to plain Python (lists stay lists; use ``tuple(...)`` where an API insists)."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node
