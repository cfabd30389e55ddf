"""mmengine hooks: atomic checkpoints, exact-resume reseeding, final metrics, plots and validation images."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook

from .distributed import get_rank

CHECKPOINTS_RECORD = "checkpoints.json"  # this run's last and best checkpoints (AtomicCheckpointHook)


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a job without a complete checkpoint to resume from, and that records
    which checkpoints are this run's.

    The runner writes every checkpoint to a temporary file and renames it (see ``ForgeRunner.save_checkpoint``);
    this hook additionally writes ``last_checkpoint`` atomically and deletes old checkpoints only *after* the new one
    is complete (mmengine deletes first, so a kill during the save could leave nothing with ``max_keep_ckpts=1``).
    After every save it writes ``work_dir/checkpoints.json``, ``{"last": name, "best": {metric: name}}`` (file names
    relative to the work dir), which ``forge-test config=RUN/config.yaml`` reads; :meth:`checkpoints` gives the
    same paths to the end-of-run summary. A resumed run keeps the best checkpoint of its first part (mmengine
    restores it from the checkpoint's message hub).
    """

    def checkpoints(self, runner) -> dict:
        """``{"last": path | None, "best": {metric: path}}``: this run's checkpoints that exist (absolute paths)."""
        last = self.last_ckpt or runner.message_hub.get_info("last_ckpt")
        if getattr(self, "key_indicators", None) and len(self.key_indicators) == 1:
            best = {self.key_indicators[0]: getattr(self, "best_ckpt_path", None)}
        else:
            best = dict(getattr(self, "best_ckpt_path_dict", {}) or {})
        exists = lambda path: bool(path) and os.path.isfile(str(path))  # noqa: E731
        return {"last": str(last) if exists(last) else None,
                "best": {k: str(v) for k, v in best.items() if exists(v)}}

    def _write_record(self, runner) -> None:
        if not is_main_process():
            return
        found = self.checkpoints(runner)
        rel = lambda path: os.path.relpath(path, runner.work_dir)  # noqa: E731 (the folder may be moved)
        record = {"last": rel(found["last"]) if found["last"] else None,
                  "best": {k: rel(v) for k, v in found["best"].items()}}
        atomic_write_text(os.path.join(runner.work_dir, CHECKPOINTS_RECORD), json.dumps(record, indent=2))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        super()._save_best_checkpoint(runner, metrics)
        self._write_record(runner)

    def _save_checkpoint_with_step(self, runner, step, meta):
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        to_remove = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        atomic_write_text(os.path.join(runner.work_dir, "last_checkpoint"), self.last_ckpt)
        for old in to_remove:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
        self._write_record(runner)


def run_checkpoint(run_dir: str) -> tuple[str, str]:
    """``(path, 'best' | 'last')``: the checkpoint to evaluate of the run in ``run_dir``: its best checkpoint (the
    first metric of ``save_best``), else its last, from ``checkpoints.json``; for runs without that record, the
    file named by ``last_checkpoint`` (looked up in ``run_dir`` when the folder has been moved).

    Raises:
        FileNotFoundError: the run has no checkpoint that exists (the message names ``run_dir``).
    """
    record_path = os.path.join(run_dir, CHECKPOINTS_RECORD)
    if os.path.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
        named = [("best", p) for p in (record.get("best") or {}).values()] + [("last", record.get("last"))]
        for kind, path in named:
            if path and os.path.isfile(os.path.join(run_dir, path)):
                return os.path.join(run_dir, path), kind
    pointer = os.path.join(run_dir, "last_checkpoint")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        for candidate in (path, os.path.join(run_dir, os.path.basename(path))):
            if path and os.path.isfile(candidate):
                return candidate, "last"
    raise FileNotFoundError(f"{run_dir} holds no checkpoint of its run (neither {CHECKPOINTS_RECORD} nor "
                            f"last_checkpoint names an existing file): pass checkpoint=PATH")


class ReseedHook(Hook):
    """Re-seed the global RNGs from ``(seed, epoch)`` and ``(seed, iteration, rank)``.

    Dropout, stochastic depth and main-process augmentations then depend only on the position in training, not on
    what consumed random numbers before (validation, data-loader start-up), so a job resumed from a checkpoint
    continues exactly as the uninterrupted run would. Data-loader workers are seeded by mmengine from the seed, rank
    and worker id.
    """

    priority = "VERY_HIGH"

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def _reseed(self, *keys: int) -> None:
        value = self.seed
        for key in keys:
            value = (value * 1_000_003 + key) % (2**31 - 1)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)

    def before_train_epoch(self, runner) -> None:
        self._reseed(1, runner.epoch, get_rank())

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._reseed(2, runner.iter, get_rank())


class FinalMetricsHook(Hook):
    """Write the latest validation/test metrics to ``work_dir/metrics.json`` (what sweep summaries read)."""

    priority = "LOW"

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename

    def _write(self, runner, metrics: dict | None, phase: str) -> None:
        if not metrics or not is_main_process():
            return
        record = {k: float(v) if isinstance(v, int | float | np.floating) else v for k, v in metrics.items()}
        record.update(_phase=phase, _epoch=runner.epoch, _iter=runner.iter)
        atomic_write_text(os.path.join(runner.work_dir, self.filename), json.dumps(record, indent=2))

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._write(runner, metrics, "val")

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._write(runner, metrics, "test")


class PlotCurvesHook(Hook):
    """After training, plot the logged losses, learning rate and validation metrics to ``work_dir/plots/*.png``."""

    priority = "LOWEST"

    def after_run(self, runner) -> None:
        if not is_main_process():
            return
        from .vis.curves import plot_scalars

        scalars = os.path.join(runner.log_dir, "vis_data", "scalars.json")
        if os.path.isfile(scalars):
            paths = plot_scalars(scalars, os.path.join(runner.work_dir, "plots"))
            if paths:
                runner.logger.info(f"plots: {', '.join(paths)}")


class ValImageHook(Hook):
    """Log a fixed handful of validation images with the model's predictions drawn on them.

    Args:
        draw_fn: ``(data_batch, outputs, index) -> RGB uint8 (H, W, 3)`` drawing sample ``index`` of a batch.
        num_images: how many of the first validation samples to log (the same images every validation).
        by_epoch: label the images with the epoch (else the iteration).
    """

    priority = "LOW"

    def __init__(self, draw_fn: Callable, num_images: int = 8, by_epoch: bool = True) -> None:
        self.draw_fn = draw_fn
        self.num_images = num_images
        self.by_epoch = by_epoch
        self._images: list[np.ndarray] = []

    def before_val_epoch(self, runner) -> None:
        self._images = []

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs: Sequence | None = None) -> None:
        if self.num_images <= 0 or not is_main_process() or outputs is None:
            return
        for i in range(len(outputs)):
            if len(self._images) >= self.num_images:
                return
            self._images.append(self.draw_fn(data_batch, outputs, i))

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not self._images or not is_main_process():
            return
        from .vis.grid import make_grid

        step = runner.epoch if self.by_epoch else runner.iter
        runner.visualizer.add_image("val_predictions", make_grid(self._images), step=step)


class WandbValHook(Hook):
    """Log validation metrics to Weights & Biases as ``val/<metric>`` against their own ``epoch``/``iter`` axis.

    mmengine's wandb backend logs every scalar at wandb's internal step (it ignores ``step``) and strips the
    ``val/`` prefix, so validation curves would share the training-iteration axis; ``forge.tracking`` declares
    ``val/*`` with ``step_metric`` = ``epoch`` (or ``iter``), and this hook supplies that axis.
    """

    priority = "LOW"

    def __init__(self, by_epoch: bool = True) -> None:
        self.step_key = "epoch" if by_epoch else "iter"

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not metrics or not is_main_process():
            return
        backend = runner.visualizer.get_backend("WandbVisBackend")
        if backend is None:
            return
        record = {f"val/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float | np.floating)}
        record[self.step_key] = runner.epoch if self.step_key == "epoch" else runner.iter
        backend.experiment.log(record)
