"""The DeiT ImageNet config, unchanged but for its size, runs one iteration on a tiny ImageNet-layout folder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from forge.cli.train import run_train
from forge.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "forge", "configs")
CLASSES = ("n01440764", "n01443537")


def write_tiny_imagenet(root) -> None:
    """``root/{train,val}/<wnid>/*.JPEG``: two classes, one image each per split, odd sizes as in ImageNet."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i, wnid in enumerate(CLASSES):
            os.makedirs(root / split / wnid)
            pixels = rng.integers(0, 256, size=(40 + 7 * i, 52, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{i}.JPEG", quality=90)


@pytest.mark.parametrize("variant", ["relu_ln", "dw"])
def test_deit_config_runs_one_iteration(tmp_path, variant):
    data = tmp_path / "imagenet"
    write_tiny_imagenet(data)
    overrides = [
        f"experiment=dynvit/deit_tiny_{variant}",
        f"dataset.root={data}",
        "dataset.num_classes=2",
        "pipeline.img_size=32",  # 2x2 patches of 16 px: the DeiT-T network and recipe, at a test's cost
        "schedule.batch_size=2",
        "schedule.num_workers=0",
        # one iteration: stop after it, the epoch-based warm-up + cosine schedule is built as configured
        "schedule.by_epoch=false",
        "schedule.max_iters=1",
        "schedule.val_interval=1",
        "runtime.vis.tensorboard=false",
        "runtime.num_vis_images=0",
        f"work_dir={tmp_path / 'wd'}",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    metrics = run_train(cfg)
    assert set(metrics) >= {"accuracy/top1", "accuracy/top5"}
    saved = load_config(str(tmp_path / "wd"))
    assert saved.model.data_preprocessor.batch_augment._target_ == "timm.data.Mixup"
    assert saved.dataset.train.transform.auto_augment == "rand-m9-mstd0.5-inc1"
    scalars = [json.loads(line) for line in open(next((tmp_path / "wd").glob("*/vis_data/scalars.json")))]
    train = [r for r in scalars if "loss" in r]
    assert len(train) == 1 and np.isfinite(train[0]["loss"])
    # the first warm-up step: lr = 5e-4 x 2 / 512 (linear rule) x 1e-3 (warm-up start factor)
    assert train[0]["lr"] == pytest.approx(5e-4 * 2 / 512 * 1e-3, rel=1e-6)
