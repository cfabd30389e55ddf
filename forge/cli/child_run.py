"""Run ``forge-train`` / ``forge-test`` as a child process from a script (the demos chain several runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def run_forge_train(experiment: str, work_dir: str, overrides: list[str], threads: int, caller: str,
                    cwd: str | None = None) -> dict:
    """One ``forge-train experiment=... work_dir=...`` run with ``threads`` BLAS/OpenMP threads.

    Returns ``dict(metrics=, checkpoint=, seconds=)``: the run's ``metrics.json`` (``{}`` when it did not
    validate), its last checkpoint and the wall time. A failed run prints the tail of its output and exits
    naming ``caller`` and the experiment.
    """
    cmd = [os.path.join(os.path.dirname(sys.executable), "forge-train"), f"experiment={experiment}",
           f"work_dir={work_dir}", "overwrite=true", "runtime.vis.tensorboard=false", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{caller}: forge-train {experiment} failed (exit {proc.returncode})")
    metrics_file = os.path.join(work_dir, "metrics.json")
    metrics = {}
    if os.path.isfile(metrics_file):
        with open(metrics_file) as f:
            metrics = json.load(f)
    with open(os.path.join(work_dir, "last_checkpoint")) as f:
        ckpt = f.read().strip()
    return dict(metrics=metrics, checkpoint=ckpt, seconds=time.time() - t0)


def run_forge_test(experiment: str, work_dir: str, overrides: list[str], threads: int, caller: str,
                   cwd: str | None = None) -> dict:
    """One ``forge-test experiment=... work_dir=...`` run with ``threads`` BLAS/OpenMP threads (the checkpoint is
    one of ``overrides``). Returns ``dict(metrics=, seconds=)``: its ``test_metrics.json`` and the wall time; a
    failed run prints the tail of its output and exits naming ``caller`` and the experiment."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "forge-test"), f"experiment={experiment}",
           f"work_dir={work_dir}", "runtime.vis.tensorboard=false", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{caller}: forge-test {experiment} failed (exit {proc.returncode})")
    with open(os.path.join(work_dir, "test_metrics.json")) as f:
        metrics = json.load(f)
    return dict(metrics=metrics, seconds=time.time() - t0)
