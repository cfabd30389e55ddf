"""``forge-train``: compose a config with Hydra, validate it, train and evaluate.

    forge-train experiment=dynvit/digits_relu_ln                 # one run in work_dirs/dynvit/digits_relu_ln
    forge-train experiment=dynvit/digits_relu_ln resume=auto     # continue from the last checkpoint there
    forge-train experiment=... --cfg job                         # print the composed config, run nothing
    forge-train -m experiment=... schedule.lr=1e-3,3e-3 seed=0,1 # a sweep, one folder per run
"""

from __future__ import annotations

import json
import os
import sys

import hydra
from omegaconf import DictConfig

from ..config import ConfigError, save_config, validate
from .common import CONFIG_DIR, check_group_overrides, report_and_exit, resolve_work_dir


def run_train(cfg: DictConfig) -> dict:
    """Validate ``cfg``, save it to the work dir and train; returns the final metrics."""
    validate(cfg)
    work_dir = resolve_work_dir(cfg)
    from ..distributed import get_rank

    if cfg.get("engine", "runner") == "fit":
        from ..fit import run_fit

        save_config(cfg, work_dir)
        return run_fit(cfg, work_dir)

    from ..runner import build_runner

    runner = build_runner(cfg, work_dir, mode="train")
    if get_rank() == 0:
        save_config(cfg, work_dir)
    runner.train()
    metrics = {}
    from ..distributed import get_world_size, parameters_in_sync

    if get_world_size() > 1:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        if not parameters_in_sync(model, atol=1e-6):
            raise RuntimeError("distributed ranks finished with different parameters")
        runner.logger.info(f"all {get_world_size()} ranks finished with identical parameters")
    path = os.path.join(work_dir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            metrics = json.load(f)
    if get_rank() == 0:
        _summary(runner, work_dir, metrics)
    return metrics


def _summary(runner, work_dir: str, metrics: dict) -> None:
    last = os.path.join(work_dir, "last_checkpoint")
    ckpt = open(last).read().strip() if os.path.isfile(last) else "none"
    best = [f for f in os.listdir(work_dir) if f.startswith("best_") and f.endswith(".pth")]
    lines = [
        "=" * 72,
        "finished " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("_")),
        f"work dir    {work_dir}",
        f"checkpoint  {ckpt}" + (f"  (best: {os.path.join(work_dir, best[0])})" if best else ""),
        f"config      {os.path.join(work_dir, 'config.yaml')}",
        f"metrics     {os.path.join(work_dir, 'metrics.json')}",
        f"logs        {runner.log_dir}  (tensorboard --logdir {work_dir})",
        f"plots       {os.path.join(work_dir, 'plots')}",
        "=" * 72,
    ]
    print("\n".join(lines), flush=True)


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    try:
        metrics = run_train(cfg)
    except ConfigError as err:
        report_and_exit(err)
    # the first metric is what Hydra sweepers (e.g. optuna) optimise
    values = [v for k, v in metrics.items() if not k.startswith("_") and isinstance(v, int | float)]
    return float(values[0]) if values else None


def main() -> None:
    check_group_overrides(sys.argv[1:])
    sys.exit(_main())


if __name__ == "__main__":
    main()
