"""The paper rows compose with CrowdHuman, the public schedule (scaled for other batch sizes) and the paper's numbers;
one override switches the NMS; the ImageNet backbone is required to train them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import forge.config  # noqa: F401  (forge.* resolvers)
from forge.config import ConfigError
from forge.runner import scaled_lr
from tests.forge.helpers import compose_cfg

ROOT = Path(__file__).resolve().parents[2]
ROWS = {"frcnn_r50_fpn_crowdhuman": ("greedy", False, dict(AP=85.1, recall=87.8, **{"MR-2": 44.7}),
                                     dict(AP=85.0, recall=87.5, **{"MR-2": 44.5})),
        "noh_nms_r50_fpn_crowdhuman": ("noh", True, dict(AP=89.0, recall=92.9, **{"MR-2": 43.9}),
                                       dict(AP=88.8, recall=92.6, **{"MR-2": 43.7}))}


def test_every_experiment_file_is_named_by_its_path():
    files = sorted((ROOT / "forge/configs/experiment/nohnms").glob("*.yaml"))
    assert {f.stem for f in files} == set(ROWS) | {"crowd_synth"}
    for f in files:
        assert f.read_text().startswith("# @package _global_"), f
        assert OmegaConf.load(f).experiment_name == f"nohnms/{f.stem}", f


@pytest.mark.parametrize("row", sorted(ROWS))
def test_paper_rows(row):
    nms, hall, paper, public = ROWS[row]
    cfg = compose_cfg([f"experiment=nohnms/{row}"])
    m = cfg.model
    assert m._target_ == "nohnms.model.NohNmsRCNN" and m.backbone == "resnet50" and m.num_classes == 1
    assert (m.nms, m.hallucinator) == (nms, hall)
    assert list(m.aspect_ratios) == [1.0, 2.0, 3.0] and m.max_det == 200
    assert (m.rpn_pre_nms_top_n_train, m.rpn_post_nms_top_n_train) == (12000, 2000)
    assert (m.rpn_pre_nms_top_n_test, m.rpn_post_nms_top_n_test) == (6000, 1000)
    assert m.roi_ignore_ioa == 0.5 and m.overlap_iou_threshold == 0.4 and m.prob_loss_beta == 0.02
    # the public config's ROI_HEADS.POSITIVE_FRACTION 0.5 (detectron2's default would be 0.25), 512 RoIs per image
    assert (m.roi_batch_size_per_image, m.roi_positive_fraction) == (512, 0.5)
    assert m.backbone_checkpoint == "required"
    assert cfg.dataset.name == "crowdhuman" and cfg.dataset.box_type == "fbox"
    assert cfg.dataset.evaluator[0]._target_ == "forge.evaluation.crowdhuman.CrowdHumanMetric"
    assert (cfg.pipeline.short_side, cfg.pipeline.max_long_side) == (800, 1400)
    assert {k: cfg.paper[k] for k in paper} == paper and {k: cfg.public_code[k] for k in public} == public
    # batch 2 on one process: lr 0.04 * 2 / 16, iterations and steps x 8 (the same number of epochs)
    s = cfg.schedule
    assert scaled_lr(s, 1) == pytest.approx(0.005)
    assert s.max_iters == 225000 and list(s.schedulers[1].milestones) == [150000, 195000]
    assert s.schedulers[0].end == 800 and s.schedulers[0].start_factor == 0.1
    s16 = compose_cfg([f"experiment=nohnms/{row}", "schedule.batch_size=16"]).schedule
    assert scaled_lr(s16, 1) == pytest.approx(0.04) and s16.max_iters == 28125
    assert list(s16.schedulers[1].milestones) == [18750, 24375]


def test_one_override_switches_the_nms():
    cfg = compose_cfg(["experiment=nohnms/noh_nms_r50_fpn_crowdhuman", "model.nms=greedy"])
    assert cfg.model.nms == "greedy" and cfg.model.hallucinator


def test_paper_row_builds_and_refuses_to_train_without_the_imagenet_file():
    cfg = compose_cfg(["experiment=nohnms/noh_nms_r50_fpn_crowdhuman"])
    net = instantiate(cfg.model, _convert_="partial")
    assert net.roi_heads.overlap_head is not None and net.rpn.top_k_all_levels
    assert type(net.backbone.body.layer1[0].bn1).__name__ == "FrozenBatchNorm2d"
    with pytest.raises(ConfigError, match=r"resnet50-0676ba61\.pth.*model\.backbone_checkpoint=weights"):
        net.init_weights()
