"""``forge-train``: compose a config with Hydra, validate it, train and evaluate.

    forge-train experiment=dynvit/digits_relu_ln                 # one run in work_dirs/dynvit/digits_relu_ln
    forge-train experiment=dynvit/digits_relu_ln resume=auto     # continue from the last checkpoint there
    forge-train experiment=dynvit/digits_relu_ln overwrite=true  # start over there, deleting the earlier run
    forge-train experiment=... --cfg job                         # print the composed config, run nothing
    forge-train -m experiment=... schedule.lr=1e-3,3e-3 seed=0,1 # a sweep, one folder per run
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import hydra
from omegaconf import DictConfig

from ..config import ConfigError, save_config, validate
from .common import CONFIG_DIR, check_group_overrides, report_and_exit, resolve_work_dir, with_user_config_dirs

# what a run leaves in its folder (Hydra's own .hydra/ and <job>.log of this launch are not counted)
_RUN_FILES = ("config.yaml", "last_checkpoint", "checkpoints.json", "metrics.json", "test_metrics.json")
_RUN_DIRS = ("plots", "wandb", "test")
_TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")  # mmengine's log folder of one launch


def earlier_run_files(work_dir: str) -> list[str]:
    """Names in ``work_dir`` that an earlier run left: checkpoints, ``last_checkpoint``, saved config, metrics,
    plots, mmengine's ``<timestamp>/`` log folders, wandb files and ``forge-test``'s ``test/`` (sorted)."""
    found = []
    for name in sorted(os.listdir(work_dir)) if os.path.isdir(work_dir) else []:
        path = os.path.join(work_dir, name)
        if os.path.isdir(path):
            if name in _RUN_DIRS or _TIMESTAMP.match(name):
                found.append(name)
        elif name in _RUN_FILES or name.endswith((".pth", ".pth.partial")):
            found.append(name)
    return found


def check_run_dir(cfg: DictConfig, work_dir: str) -> None:
    """A new run never mixes with an earlier one: a folder holding an earlier run's files is refused unless
    ``resume`` continues that run, or ``overwrite=true`` deletes those files first (on rank 0 only; the others
    are still waiting at the distributed rendezvous of :func:`forge.runner.build_runner`, before any write).

    Raises:
        ConfigError: ``work_dir`` holds an earlier run and neither override is given, or both are given.
    """
    resume, overwrite = cfg.get("resume", False), cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite={overwrite!r} is invalid: use true or false")
    if resume and overwrite:
        raise ConfigError(f"resume={resume!r} and overwrite=true exclude each other: continue the run in {work_dir} "
                          f"or start it over")
    found = earlier_run_files(work_dir)
    if not found or resume:
        return
    if not overwrite:
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise ConfigError(f"{work_dir} already holds a run ({shown}): continue it with resume=auto, start it over "
                          f"with overwrite=true (deletes those files), or choose another work_dir=")
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:  # before init_distributed
        for name in found:
            path = os.path.join(work_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        print(f"overwrite=true: deleted the earlier run in {work_dir}: {', '.join(found)}", flush=True)


def discard_failed_start(work_dir: str, before: list[str], runner=None) -> list[str]:
    """Delete what an attempt that failed during start-up added to ``work_dir`` (its ``config.yaml``, mmengine's
    log folder, ...), so that fixing the cause and running the same command again needs no ``overwrite=true``.

    ``before`` is :func:`earlier_run_files` from before the attempt (a resumed run's files are never touched). The
    attempt counts as started, and keeps everything, once it trained an iteration or wrote a checkpoint or
    ``metrics.json``. Rank 0 only. Returns the names deleted.
    """
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) != 0:
        return []
    if runner is not None and getattr(runner, "iter", 0) > 0:
        return []
    new = [n for n in earlier_run_files(work_dir) if n not in before]
    if any(n.endswith(".pth") or n in ("last_checkpoint", "checkpoints.json", "metrics.json") for n in new):
        return []
    for name in new:
        path = os.path.join(work_dir, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return new


def run_train(cfg: DictConfig) -> dict:
    """Validate ``cfg``, check its work dir (:func:`check_run_dir`), save the config there and train; returns the
    final metrics. An attempt that fails before training starts leaves nothing behind
    (:func:`discard_failed_start`)."""
    validate(cfg)
    work_dir = resolve_work_dir(cfg)
    check_run_dir(cfg, work_dir)
    from ..distributed import get_rank

    before, runner = earlier_run_files(work_dir), None
    try:
        if cfg.get("engine", "runner") == "fit":
            from ..fit import run_fit

            save_config(cfg, work_dir)
            return run_fit(cfg, work_dir)

        from ..runner import build_runner

        runner = build_runner(cfg, work_dir, mode="train")
        if get_rank() == 0:
            save_config(cfg, work_dir)
        runner.train()
    except BaseException:
        discard_failed_start(work_dir, before, runner)
        raise
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
    from ..hooks import AtomicCheckpointHook

    # this run's checkpoints, as the checkpoint hook saved them (a listing could show an earlier run's files)
    hooks = [h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)]
    saved = hooks[0].checkpoints(runner) if hooks else {"last": None, "best": {}}
    best = [f"best      {path}  ({metric})" for metric, path in saved["best"].items()]
    lines = [
        "=" * 72,
        "finished " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("_")),
        f"work dir    {work_dir}",
        f"checkpoint  last      {saved['last'] or 'none'}",
        *[f"            {line}" for line in best],
        f"config      {os.path.join(work_dir, 'config.yaml')}",
        f"metrics     {os.path.join(work_dir, 'metrics.json')}",
        f"logs        {runner.log_dir}  (tensorboard --logdir {work_dir})",
        f"plots       {os.path.join(work_dir, 'plots')}",
        "=" * 72,
    ]
    print("\n".join(lines), flush=True)


def _input_error(err: BaseException) -> BaseException | None:
    """The error about the user's config or files behind ``err``, if any: a :class:`ConfigError` or a bad
    annotation file, also when Hydra's ``instantiate`` wrapped it (its ``__cause__``); they name the key or file."""
    from ..data.coco_reader import AnnotationError
    from ..data.crowdhuman_reader import CrowdHumanFormatError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (ConfigError, AnnotationError, CrowdHumanFormatError)):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    try:
        metrics = run_train(cfg)
    except Exception as err:
        cause = _input_error(err)
        if cause is None:  # anything else is a bug: traceback
            raise
        report_and_exit(cause)
    # the first metric is what Hydra sweepers (e.g. optuna) optimise
    values = [v for k, v in metrics.items() if not k.startswith("_") and isinstance(v, int | float)]
    return float(values[0]) if values else None


def main() -> None:
    sys.argv[1:] = with_user_config_dirs(sys.argv[1:])
    check_group_overrides(sys.argv[1:])
    sys.exit(_main())


if __name__ == "__main__":
    main()
