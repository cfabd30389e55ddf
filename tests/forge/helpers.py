"""Helpers shared by the core tests: composing configs and running the command-line tools."""

from __future__ import annotations

import os
import subprocess
import sys

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "forge", "configs")
BIN = os.path.dirname(sys.executable)


def compose_cfg(overrides: list[str], config_name: str = "train") -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def fast_digits(work_dir: str, epochs: int = 2, extra: list[str] | None = None) -> list[str]:
    """Overrides for a quick digits run (no TensorBoard, no images: less start-up time)."""
    return [
        "experiment=dynvit/digits_softmax",
        f"schedule.max_epochs={epochs}",
        "schedule.val_interval=1",
        "schedule.num_workers=1",
        "runtime.vis.tensorboard=false",
        "runtime.num_vis_images=0",
        f"work_dir={work_dir}",
        *(extra or []),
    ]


def run_cli(tool: str, args: list[str], cwd: str | None = None, timeout: int = 300, env: dict | None = None):
    """Run a console script of this environment; returns the CompletedProcess (never raises on failure)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [os.path.join(BIN, tool), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
