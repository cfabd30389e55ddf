"""Weights & Biases set-up: offline unless an API key is configured; validation metrics on their own step axis."""

from __future__ import annotations

import os

from omegaconf import DictConfig


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else ``online`` when an API key is available, else ``offline`` (sync later)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import netrc

        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def wandb_backend(cfg: DictConfig, work_dir: str) -> dict:
    """mmengine ``WandbVisBackend`` config for this run.

    mmengine logs every scalar at the training iteration; ``define_metric`` puts ``val/*`` and ``test/*`` metrics on
    their own ``epoch``-or-``iter`` axis so that wandb does not drop them as out-of-order steps.
    """
    wandb_cfg = cfg.runtime.get("wandb", {}) or {}
    step = "epoch" if cfg.schedule.get("by_epoch", True) else "iter"
    init_kwargs = dict(
        project=wandb_cfg.get("project", "paperforge"),
        name=str(cfg.experiment_name),
        dir=work_dir,
        mode=wandb_mode(),
        config=None,
    )
    if wandb_cfg.get("entity"):
        init_kwargs["entity"] = wandb_cfg.entity
    return dict(
        type="WandbVisBackend",
        init_kwargs=init_kwargs,
        define_metric_cfg=[
            dict(name=step, hidden=True),
            dict(name="val/*", step_metric=step),
        ],
        commit=True,
        log_code_name=None,
    )
