"""``forge-test``: evaluate a checkpoint on the validation/test split.

    forge-test experiment=dynvit/digits_relu_ln checkpoint=work_dirs/dynvit/digits_relu_ln/epoch_30.pth
    forge-test config=work_dirs/dynvit/digits_relu_ln/config.yaml checkpoint=...   # the saved config alone
    forge-test config=work_dirs/dynvit/digits_relu_ln/config.yaml   # that run's best checkpoint, else its last
    forge-test ... corruption.name=gaussian_noise corruption.severity=3   # ImageNet-C corruption of the test images

Metrics are printed, written to ``<work_dir>/metrics.json`` (``_phase: test``) and returned.
"""

from __future__ import annotations

import json
import os
import sys

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, load_config, validate
from .common import CONFIG_DIR, check_group_overrides, report_and_exit, resolve_work_dir, with_user_config_dirs

# keys taken from the command line rather than the saved config
_FROM_COMMAND_LINE = ("checkpoint", "config", "work_dir", "launcher", "resume", "load_from")


def merge_saved(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """The saved config named by ``cfg.config``, with this command's checkpoint/work_dir/launcher and its
    ``key=value`` overrides applied on top (so ``dataset.val.ann_file=...`` still works)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    saved = load_config(str(cfg.config))
    for key in _FROM_COMMAND_LINE:
        if key in cfg:
            saved[key] = cfg[key]
    groups = {"dataset", "model", "loss", "schedule", "runtime", "launcher", "experiment"}
    for override in OverridesParser.create().parse_overrides(overrides or []):
        key = override.key_or_group
        if key in groups or key.split(".", 1)[0] in _FROM_COMMAND_LINE or key.startswith("hydra"):
            continue
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(saved, parent) if parent else saved
            if node is not None and leaf in node:
                node.pop(leaf)
        else:
            OmegaConf.update(saved, key, override.value(), force_add=True)
    return saved


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not running under @hydra.main
        return []


def _run_checkpoint(config: str) -> str:
    """The checkpoint of the run whose saved config is ``config`` (its best, else its last), announced."""
    from ..distributed import get_rank
    from ..hooks import run_checkpoint

    run_dir = os.path.dirname(os.path.abspath(config)) if not os.path.isdir(config) else os.path.abspath(config)
    try:
        path, kind = run_checkpoint(run_dir)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    if get_rank() == 0:
        print(f"forge-test: no checkpoint= given, evaluating the {kind} checkpoint of {run_dir}: {path}", flush=True)
    return path


def apply_corruption(cfg: DictConfig) -> DictConfig:
    """With ``corruption.name`` set, put :class:`forge.data.corruptions.Corrupt` first in the evaluated split's
    pipeline (the image as loaded, before any resize, as MaskCLIP's robustness study); ``cfg`` is changed in place."""
    spec = cfg.get("corruption")
    if not spec or not spec.get("name"):
        return cfg
    from ..data.corruptions import CORRUPTIONS

    name, severity = str(spec.name), spec.get("severity")
    if name not in CORRUPTIONS:
        raise ConfigError(f"corruption.name={name!r} is invalid: choose one of {', '.join(CORRUPTIONS)}")
    if not isinstance(severity, int) or isinstance(severity, bool) or not 1 <= severity <= 5:
        raise ConfigError(f"corruption.severity={severity!r} is invalid: must be an integer 1..5")
    split = "test" if cfg.dataset.get("test") is not None else "val"
    node = OmegaConf.to_container(cfg.dataset[split], resolve=True)
    pipeline = node.get("pipeline") if isinstance(node, dict) else None
    if pipeline is not None and not isinstance(pipeline, list):
        raise ConfigError(f"corruption: dataset.{split}.pipeline must be a list of transforms to prepend to")
    step = {"_target_": "forge.data.corruptions.Corrupt", "name": name, "severity": severity}
    node["pipeline"] = [step, *(pipeline or [])]
    cfg.dataset[split] = node
    return cfg


def run_test(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.checkpoint`` (read once; with only ``config=``, that run's best or last checkpoint) on the
    test split (the val split when there is none); returns the metrics."""
    if cfg.get("config"):
        cfg = merge_saved(cfg, _task_overrides())
        if not cfg.get("checkpoint"):
            cfg.checkpoint = _run_checkpoint(str(cfg.config))
    checkpoint = cfg.get("checkpoint")
    if not checkpoint:
        raise ConfigError("checkpoint= is required (or config=RUN/config.yaml alone: that run's best checkpoint, "
                          "else its last)")
    if not os.path.isfile(str(checkpoint)):
        raise ConfigError(f"checkpoint={checkpoint!r} does not exist")
    apply_corruption(cfg)
    validate(cfg, mode="test")
    work_dir = resolve_work_dir(cfg)
    from ..runner import build_runner

    runner = build_runner(cfg, work_dir, mode="test")
    try:
        # strict: a checkpoint of another model must fail, not be evaluated with a warning; a paper's original
        # format too (ForgeRunner); the file is read once, refusing files that need code to unpickle
        runner.load_checkpoint(str(checkpoint), strict=True)
    except ValueError as err:  # ConfigError included: both name the file
        raise ConfigError(str(err)) from err
    metrics = runner.test()
    metrics = {k: float(v) if isinstance(v, int | float | np.floating) else v for k, v in (metrics or {}).items()}
    from ..distributed import get_rank

    if get_rank() == 0:
        print("=" * 72)
        for key, value in metrics.items():
            print(f"{key:<32} {value:.4f}" if isinstance(value, float) else f"{key:<32} {value}")
        print(f"metrics written to {os.path.join(work_dir, 'test_metrics.json')}")
        print("=" * 72, flush=True)
        with open(os.path.join(work_dir, "test_metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


@hydra.main(config_path=CONFIG_DIR, config_name="test", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    try:
        run_test(cfg)
    except ConfigError as err:
        report_and_exit(err)


def main() -> None:
    sys.argv[1:] = with_user_config_dirs(sys.argv[1:])
    check_group_overrides(sys.argv[1:])
    sys.exit(_main())


if __name__ == "__main__":
    main()
