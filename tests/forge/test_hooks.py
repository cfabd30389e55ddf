"""Hooks that are not exercised end to end elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

from forge.hooks import WandbValHook


class _Recorder:
    def __init__(self):
        self.logged = []

    def log(self, record):
        self.logged.append(record)


def test_wandb_validation_metrics_get_their_own_axis():
    exp = _Recorder()
    backend = SimpleNamespace(experiment=exp)
    visualizer = SimpleNamespace(get_backend=lambda name: backend if name == "WandbVisBackend" else None)
    runner = SimpleNamespace(visualizer=visualizer, epoch=3, iter=120)
    WandbValHook(by_epoch=True).after_val_epoch(runner, {"accuracy/top1": 91.5})
    WandbValHook(by_epoch=False).after_val_epoch(runner, {"coco/bbox_mAP": 0.25})
    assert exp.logged == [{"val/accuracy/top1": 91.5, "epoch": 3}, {"val/coco/bbox_mAP": 0.25, "iter": 120}]


def test_wandb_hook_is_silent_without_the_backend():
    visualizer = SimpleNamespace(get_backend=lambda name: None)
    WandbValHook().after_val_epoch(SimpleNamespace(visualizer=visualizer, epoch=1, iter=1), {"a": 1.0})
