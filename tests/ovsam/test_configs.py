"""Every OVSAM model and experiment config composes; the paper-size models build (meta device) with the official
keys; the paper numbers sit beside the rows they belong to; the COCO 48 / 17 split is the known one."""

from __future__ import annotations

import json
import os

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from tests.forge.helpers import compose_cfg

EVAL = ["eval_coco_box", "eval_coco_center_point", "eval_lvis_box", "eval_lvis_center_point",
        "eval_coco_detector_boxes"] + [f"baseline_{d}_{r}" for d in ("coco", "lvis")
                                       for r in ("image_crop", "feature_crop")]
TRAIN = ["sam2clip_sa1b", "clip2sam_coco_ov", "clip2sam_lvis", "clip2sam_joint"]
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "ovsam", "official_manifest.json")


def _model(cfg) -> dict:
    return OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize("experiment", EVAL)
def test_eval_experiments_compose(experiment):
    extra = ["detections=dets.json"] if "detector" in experiment else []
    cfg = compose_cfg([f"experiment=ovsam/{experiment}", *extra], "test")
    model = _model(cfg)
    want = "ovsam.baselines.SAMCLIPBaseline" if experiment.startswith("baseline") else "ovsam.evaluate.OVSAMEvaluator"
    assert model["_target_"] == want and cfg.pipeline.val is None and cfg.runtime.num_vis_images == 0
    assert model["mode"] == ("center_point" if "center_point" in experiment else "box")
    metric = cfg.dataset.evaluator[0]
    if "detector" in experiment:
        assert metric._target_ == "forge.evaluation.coco.CocoMetric" and model["detections"] == "dets.json"
        assert OmegaConf.is_missing(compose_cfg([f"experiment=ovsam/{experiment}"], "test"), "detections")
        return
    assert metric._target_ == "forge.evaluation.prompt.PromptSegMetric"
    if "coco" in experiment:
        assert len(model["base_classes"]) == 48 and list(metric.novel_classes) == model["novel_classes"]
    else:
        assert model["novel_frequencies"] == ["r"] and list(metric.novel_frequencies) == ["r"]
        assert model["classifier"]["ann_file"].endswith("lvis_v1_val.json") and model["classifier"]["classes"] is None


def test_paper_numbers_beside_their_rows():
    coco = compose_cfg(["experiment=ovsam/eval_coco_box"], "test").paper
    lvis = compose_cfg(["experiment=ovsam/eval_lvis_box"], "test").paper
    assert (coco.mIoU_base, coco.mIoU_novel, coco.acc) == (81.5, 84.0, 84.3)
    assert (lvis.mIoU_base, lvis.mIoU_novel, lvis.acc) == (80.4, 83.1, 66.6)
    assert compose_cfg(["experiment=ovsam/baseline_coco_image_crop"], "test").paper is None


def test_coco_ov_split():
    cfg = compose_cfg(["dataset=coco_ov"], "test").dataset
    base, novel = set(cfg.base_classes), set(cfg.novel_classes)
    assert len(base) == 48 and len(novel) == 17 and not base & novel and base | novel <= set(cfg.classes)
    assert {"bus", "dog", "cow", "elephant", "umbrella", "tie", "skateboard", "cup", "knife", "cake", "couch",
            "keyboard", "sink", "scissors", "airplane", "cat", "snowboard"} == novel
    # in COCO label order (the contiguous labels of the dataset)
    assert list(cfg.base_classes) == [c for c in cfg.classes if c in base]


@pytest.mark.parametrize("experiment", TRAIN)
def test_train_experiments_compose(experiment):
    cfg = compose_cfg([f"experiment=ovsam/{experiment}"])
    model = _model(cfg)
    s = cfg.schedule
    assert s.optimizer._target_ == "torch.optim.AdamW" and s.lr == 1e-4 and s.base_batch_size == 16
    if experiment == "sam2clip_sa1b":
        assert model["_target_"] == "ovsam.train.SAM2CLIPDistiller" and s.max_epochs == 24
        assert s.clip_grad.max_norm == 5.0 and s.schedulers[1].eta_min_ratio == 0.01
        assert model["student"]["sam"] == model["teacher"]["checkpoint"]  # SAM-H's pos_embed
        return
    assert model["_target_"] == "ovsam.train.CLIP2SAMTrainer" and s.max_epochs == 12
    assert list(s.schedulers[1].milestones) == [8, 11] and s.clip_grad.max_norm == 0.01
    train = OmegaConf.to_container(cfg.pipeline.train, resolve=True)
    steps = [t["_target_"].rsplit(".", 1)[1] for t in train]
    ov = experiment == "clip2sam_coco_ov"
    # the official LSJ: flip, resize x U[lo, hi) (COCO 0.9-2.0, LVIS 0.1-2.0), 1024 crop, mask-area filter
    assert steps == ["KeepClasses"] * ov + ["RandomMirror", "RandomResize", "RandomCrop", "FilterSmallMasks"]
    jitter = train[steps.index("RandomResize")]
    assert jitter["scale"] == 1024 and jitter["ratio_range"] == ([0.9, 2.0] if ov else [0.1, 2.0])
    assert train[steps.index("RandomCrop")]["size"] == 1024 and train[-1]["min_area"] == 32
    if experiment == "clip2sam_joint":
        assert cfg.dataset.train_batch_sampler._target_ == "ovsam.data.mixed_batch_sampler"


def _meta(cfg_model, **updates):
    with open_dict(cfg_model):
        for key, value in updates.items():
            OmegaConf.update(cfg_model, key, value, merge=False)
    with torch.device("meta"):
        return instantiate(cfg_model, _convert_="partial")


@pytest.mark.slow
def test_paper_size_models_build_with_the_official_keys():
    with open(FIXTURE) as f:
        manifest = json.load(f)
    cfg = compose_cfg(["experiment=ovsam/eval_coco_box"], "test")
    no_files = {"model.clip": None, "model.sam2clip": None, "model.sam": None,
                "classifier": {"_target_": "torch.zeros", "_args_": [80, 768]}}
    ev = _meta(cfg.model, **no_files)
    keys = {k: list(v.shape) for k, v in ev.model.state_dict().items()}
    assert keys == {k: list(v) for k, v in manifest["clip2sam_coco_rn50x16"].items()}
    assert ev.base.sum() == 48 and ev.evaluated.sum() == 65 and ev.mode == "box"
    train = compose_cfg(["experiment=ovsam/clip2sam_coco_ov"])
    tr = _meta(train.model, **no_files)
    assert set(tr.state_dict()) == {f"model.{k}" for k in keys}
    distill = _meta(compose_cfg(["experiment=ovsam/sam2clip_sa1b"]).model,
                    **{"student.clip": None, "student.sam": None, "teacher.checkpoint": None})
    assert distill.student.neck_student.pos_embed.shape == (1, 64, 64, 1280)
    assert distill.teacher is not None
    for r in ("image_crop", "feature_crop"):
        base = _meta(compose_cfg([f"experiment=ovsam/baseline_coco_{r}"], "test").model,
                     **{"clip.path": None, "classifier": {"_target_": "torch.zeros", "_args_": [80, 768]}})
        assert base.recognition == r and base.sam.img_size == 1024 and base.evaluated.sum() == 65


def test_clip2sam_lsj_pipeline_runs_and_keeps_masks_on_boxes():
    """The composed COCO open-vocabulary train pipeline on a 600 x 800 image: at most 1024 a side, the novel class's
    instance gone, every kept box the tight box of its mask."""
    import numpy as np

    from forge.data.transforms import Compose
    from forge.ops.masks import masks_to_boxes
    from tests.forge.data.test_transforms import assert_aligned, coord_sample

    cfg = compose_cfg(["experiment=ovsam/clip2sam_coco_ov"])
    pipe = Compose([instantiate(t) for t in cfg.pipeline.train])
    classes = list(cfg.dataset.classes)
    labels = torch.tensor([classes.index(c) for c in ("person", "car", "dog")])
    sizes = set()
    for seed in range(6):
        np.random.seed(seed)
        s = coord_sample(600, 800, boxes=((100, 100, 500, 400), (600, 300, 790, 590), (10, 10, 200, 200)))
        s["gt"].labels = labels.clone()
        out = pipe(s)
        sizes.add(out["img"].shape[:2])
        assert max(out["img"].shape[:2]) <= 1024 and classes.index("dog") not in out["gt"].labels.tolist()
        assert_aligned(out)
        if len(out["gt"]):
            assert torch.equal(out["gt"].boxes, masks_to_boxes(out["gt"].masks).to(out["gt"].boxes))
    assert len(sizes) > 1  # the jitter changes the size
