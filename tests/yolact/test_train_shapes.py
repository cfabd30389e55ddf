"""YOLACT through the one runner: experiment configs, the 800k schedule's autoscaling, the ResNet-18 backbone, a
few iterations of ``yolact/shapes`` with COCO metrics (fast) and a short real training run (slow)."""

from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forge.cli.train import run_train
from forge.data.shapes import make_shapes
from tests.forge.helpers import compose_cfg
from yolact.backbone import ResNetBackbone, build_backbone

ROOT = Path(__file__).resolve().parents[2]
# the paper rows; what their configs build (network, schedule as stepped, BN freezing, the required ImageNet
# backbone) is tested in test_paper_rows.py
ROWS = ("r50_550_coco", "darknet53_550_coco", "r101_550_coco", "r101_700_coco", "plus_r50_550_coco",
        "plus_r101_550_coco")


def test_every_experiment_file_is_named_by_its_path():
    files = sorted((ROOT / "forge/configs/experiment/yolact").glob("*.yaml"))
    assert {f.stem for f in files} == set(ROWS) | {"shapes"}
    for f in files:
        text = f.read_text()
        assert text.startswith("# @package _global_"), f
        assert OmegaConf.load(f).experiment_name == f"yolact/{f.stem}", f


@pytest.mark.parametrize("row", sorted(ROWS))
def test_paper_rows_compose_with_the_coco_data_and_the_original_pipeline(row):
    cfg = compose_cfg([f"experiment=yolact/{row}"])
    assert cfg.experiment_name == f"yolact/{row}"
    assert cfg.dataset.name == "coco" and cfg.model._target_ == "yolact.model.Yolact"
    assert cfg.dataset.evaluator[0].metric == ["bbox", "segm"]
    assert cfg.dataset.evaluator[0].ann_file == cfg.dataset.val.ann_file
    # the original's SSDAugmentation, quirks included: annotation boxes scaled and clipped (not refitted to masks),
    # its 4/550 box filter applied to pixel boxes, Expand filled with its mean colour even for DarkNet's /255 input,
    # its no-op minimum-IoU crop test, float images; no normalisation (the model's data preprocessor does it)
    assert cfg.pipeline.name == "yolact_ssd" and cfg.dataset.train.pipeline == cfg.pipeline.train
    pipe = {type(t).__name__: t for t in instantiate(cfg.pipeline.train, _convert_="partial")}
    assert list(pipe) == ["PhotometricDistort", "Expand", "RandomSampleCrop", "RandomMirror", "Resize",
                          "FilterSmallBoxes"]
    assert not pipe["RandomSampleCrop"].recompute_boxes and not pipe["Resize"].recompute_boxes
    assert not pipe["RandomSampleCrop"].enforce_min_iou and pipe["Resize"].keep_float
    assert pipe["Expand"].fill == pytest.approx((123.68, 116.78, 103.94))
    assert pipe["FilterSmallBoxes"].min_width == pytest.approx(4 / 550, abs=1e-5)
    # the original freezes BN when a GPU gets fewer than 6 images (its train.py), e.g. 8 GPUs x 1 image
    assert cfg.model.freeze_bn is False
    assert compose_cfg([f"experiment=yolact/{row}", "schedule.batch_size=2"]).model.freeze_bn is True


def test_autoscale_divides_iterations_as_the_original(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    cfg = compose_cfg(["experiment=yolact/r101_550_coco", "schedule.batch_size=16"])
    assert cfg.schedule.max_iters == 400_000
    assert list(cfg.schedule.schedulers[1].milestones) == [140_000, 300_000, 350_000, 375_000]
    assert cfg.schedule.schedulers[0].end == 500  # the warm-up is not scaled
    from forge.runner import scaled_lr

    assert scaled_lr(cfg.schedule, world_size=1) == pytest.approx(2e-3)
    monkeypatch.setenv("WORLD_SIZE", "4")  # 4 processes x 4 images = 16
    cfg = compose_cfg(["experiment=yolact/r50_550_coco", "schedule.batch_size=4"])
    assert cfg.schedule.max_iters == 400_000
    cfg = compose_cfg(["experiment=yolact/r50_550_coco", "schedule.batch_size=4", "schedule.autoscale_iters=false"])
    assert cfg.schedule.max_iters == 800_000


@pytest.mark.parametrize("depth", [18, 34])
def test_basic_block_resnets_match_torchvision(depth):
    import torchvision

    torch.manual_seed(0)
    ours = ResNetBackbone(depth, out_indices=(1, 2, 3)).eval()
    ref = getattr(torchvision.models, f"resnet{depth}")().eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        c3, c4, c5 = ours(x)
        y = ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))
        torch.testing.assert_close(c3, y)
        torch.testing.assert_close(c5, ref.layer4(ref.layer3(y)))
    assert ours.out_channels == [128, 256, 512] and c4.shape == (1, 256, 4, 6)
    assert build_backbone(f"resnet{depth}").out_channels == [128, 256, 512]


def _shapes_overrides(root: str, work: str, size: int, extra: list[str]) -> list[str]:
    return [
        "experiment=yolact/shapes",
        f"dataset.root={root}",
        f"pipeline.img_size={size}",
        f"work_dir={work}",
        "schedule.num_workers=0",
        "runtime.vis.tensorboard=false",
        *extra,
    ]


def _train_losses(work: str) -> list[dict]:
    scalars = glob.glob(os.path.join(work, "*", "vis_data", "scalars.json"))
    assert scalars, "no scalars.json was written"
    return [r for r in map(json.loads, open(scalars[0])) if "loss" in r]


def test_a_few_iterations_of_yolact_shapes_give_losses_and_coco_metrics(tmp_path):
    root, work = tmp_path / "shapes", tmp_path / "run"
    make_shapes(str(root), num_train=8, num_val=4, size=128, seed=0)
    cfg = compose_cfg(_shapes_overrides(str(root), str(work), 128, [
        "schedule.max_iters=2", "schedule.warmup_iters=1", "schedule.batch_size=2", "runtime.log_interval=1",
        "runtime.num_vis_images=2",
    ]))
    assert cfg.model.backbone == "resnet18" and cfg.model.num_prototypes == 32 and cfg.model.nms == "fast"
    metrics = run_train(cfg)
    losses = _train_losses(str(work))
    assert len(losses) == 2
    for rec in losses:
        for key in ("loss", "loss_cls", "loss_box", "loss_mask", "loss_semantic"):
            assert math.isfinite(rec[key]) and rec[key] > 0, rec
    for metric in ("bbox", "segm"):
        for name in ("mAP", "mAP_50", "mAP_75", "AR@100"):
            value = metrics[f"coco/{metric}_{name}"]
            assert 0.0 <= value <= 1.0, (metric, name, value)
    assert os.path.isfile(work / "iter_2.pth") and os.path.isfile(work / "config.yaml")
    assert glob.glob(str(work / "*" / "vis_data" / "vis_image" / "val_predictions_*.png"))


@pytest.mark.slow
def test_short_training_on_shapes_reaches_mask_ap50_well_above_zero(tmp_path):
    """About 4 minutes on 2 cores with bfloat16 (AVX512-BF16), 7 without: 300 iterations of batch 8 at 256 px from
    scratch (a third of the ``yolact/shapes`` schedule)."""
    root, work = tmp_path / "shapes", tmp_path / "run"
    make_shapes(str(root), num_train=300, num_val=50, size=256, seed=0)
    torch.set_num_threads(2)
    cfg = compose_cfg(_shapes_overrides(str(root), str(work), 256, [
        "schedule.max_iters=300", "schedule.warmup_iters=30", "runtime.num_vis_images=0", "seed=0",
    ]))
    metrics = run_train(cfg)
    losses = _train_losses(str(work))
    assert all(math.isfinite(r["loss"]) for r in losses)
    assert losses[-1]["loss"] < 0.5 * losses[0]["loss"], (losses[0]["loss"], losses[-1]["loss"])
    assert metrics["coco/segm_mAP_50"] > 0.1, metrics
    assert metrics["coco/bbox_mAP_50"] > 0.1, metrics
