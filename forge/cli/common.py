"""What the command-line entry points share: where configs live, the work dir, clean error exits."""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig

# configs/ at the repository root (the project is installed in editable mode); FORGE_CONFIG_DIR overrides it
CONFIG_DIR = os.environ.get(
    "FORGE_CONFIG_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs")
)


def resolve_work_dir(cfg: DictConfig) -> str:
    """The run's folder: ``work_dir`` if given, else Hydra's run directory; created, absolute."""
    work_dir = cfg.get("work_dir")
    if not work_dir:
        from hydra.core.hydra_config import HydraConfig

        work_dir = HydraConfig.get().runtime.output_dir
    work_dir = os.path.abspath(str(work_dir))
    os.makedirs(work_dir, exist_ok=True)
    return work_dir


def report_and_exit(err: Exception, code: int = 2) -> None:
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(code)
