"""The SAM + CLIP baselines through forge-test, and the joint-training config's mixed loader."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image

from denseclip import build_clip, save_clip
from ovsam import CLIPResNetBackbone
from ovsam.baselines import feature_crop_logits, image_crop_logits
from ovsam.builders import text_classifier
from ovsam.evaluate import class_split
from ovsam.model import preprocess
from tests.edgesam.test_evaluate import SAM_NODE, tiny_sam
from tests.forge.helpers import compose_cfg

from .test_evaluate import BASE, NOVEL, SHAPES
from .tiny import TINY_RN


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from forge.data.shapes import make_shapes

    root = tmp_path_factory.mktemp("ovsam_harness")
    make_shapes(str(root / "shapes"), num_train=6, num_val=2, size=96, seed=1)
    torch.manual_seed(0)
    save_clip(build_clip(TINY_RN).eval(), str(root / "clip.pt"))
    torch.save(tiny_sam(3).state_dict(), root / "sam.pth")  # a SAM release's layout: image_encoder.*, ...
    return {k: str(root / v) for k, v in dict(root="shapes", clip="clip.pt", sam="sam.pth", cache="cache").items()}


def _baseline_cfg(recognition: str, files: dict, work):
    cfg = compose_cfg([f"experiment=ovsam/baseline_coco_{recognition}", "dataset=shapes",
                       f"dataset.root={files['root']}", "~model.sam", SAM_NODE, f"checkpoint={files['sam']}",
                       f"work_dir={work}", "runtime.device=cpu", "schedule.num_workers=0",
                       "runtime.vis.tensorboard=false", "model.feature_input_size=128"], "test")
    with open_dict(cfg):
        cfg.model.clip.update(path=files["clip"], arch=TINY_RN)
        cfg.model.classifier.update(templates=["a {}."], cache_dir=files["cache"])
        cfg.model.update(base_classes=BASE, novel_classes=NOVEL)
        cfg.dataset.evaluator = [{"_target_": "forge.evaluation.prompt.PromptSegMetric", "novel_classes": NOVEL}]
    return cfg


def _slow_accuracy(recognition: str, files: dict) -> tuple[float, float]:
    """Per GT instance (evaluated classes, non-crowd, non-empty): CLIP on its box, official label rule."""
    from denseclip import load_clip
    from forge.data.coco_dataset import CocoInstanceDataset

    clip = load_clip(None, files["clip"]).model
    classifier = text_classifier(files["clip"], SHAPES, templates=["a {}."], cache_dir=files["cache"])
    _, evaluated = class_split(5, BASE, NOVEL, SHAPES)
    ds = CocoInstanceDataset(os.path.join(files["root"], "annotations", "instances_val.json"),
                             os.path.join(files["root"], "val"), pipeline=None, classes=SHAPES)
    hits, novel_hits = [], []
    for i in range(len(ds)):
        img, gt = ds[i]["inputs"], ds[i]["data_samples"].gt
        for j in range(len(gt.labels)):
            label = int(gt.labels[j])
            if gt.iscrowd[j] or not gt.masks[j].any() or not evaluated[label]:
                continue
            box = gt.boxes[j:j + 1].float()
            if recognition == "image_crop":
                logits = image_crop_logits(clip, img, box, classifier)
            else:
                x, _ = preprocess(img.permute(1, 2, 0).numpy(), 128)
                logits = feature_crop_logits(CLIPResNetBackbone(clip.visual), x, box * 128 / max(img.shape[1:]),
                                             classifier)
            logits[:, :-1][:, ~evaluated] = -1000.0
            ok = int(logits.softmax(-1)[0, :-1].argmax()) == label
            hits.append(ok)
            if SHAPES[label] in NOVEL:
                novel_hits.append(ok)
    return float(np.mean(hits)), float(np.mean(novel_hits))


@pytest.mark.parametrize("recognition", ["image_crop", "feature_crop"])
def test_baselines_through_forge_test(files, tmp_path, recognition):
    from forge.cli.test import run_test

    metrics = run_test(_baseline_cfg(recognition, files, tmp_path))
    acc, acc_novel = _slow_accuracy(recognition, files)
    assert metrics["prompt/acc"] == pytest.approx(acc) and metrics["prompt/acc_novel"] == pytest.approx(acc_novel)
    for key in ("mIoU", "mIoU_base", "mIoU_novel"):
        assert 0.0 <= metrics[f"prompt/{key}"] <= 1.0


def test_joint_config_loader_holds_the_ratio(files, tmp_path):
    from hydra.utils import instantiate

    from forge.runner import build_dataloader

    folder = tmp_path / "in21k"
    rng = np.random.default_rng(0)
    for name in ("circle", "hexagon"):
        (folder / name).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / name / f"{k}.png")
    vocab = tmp_path / "extra.txt"
    vocab.write_text("hexagon|six-gon\nsquare\n")
    ann = os.path.join(files["root"], "annotations")
    cfg = compose_cfg(["experiment=ovsam/clip2sam_joint", f"dataset.image_level_root={folder}",
                       f"dataset.vocabularies=[{vocab}]", "dataset.image_level_ratio=0.25", "schedule.batch_size=4",
                       "schedule.num_workers=0", "pipeline.img_size=128",
                       "dataset.segmentation._target_=forge.data.coco_dataset.CocoInstanceDataset",
                       f"dataset.segmentation.ann_file={ann}/instances_train.json",
                       f"dataset.segmentation.img_prefix={files['root']}/train",
                       f"dataset.val.ann_file={ann}/instances_val.json"])
    vocabulary = instantiate(cfg.dataset.vocabulary)
    assert vocabulary == [[c] for c in SHAPES] + [["hexagon", "six-gon"]]  # "square" merged, LVIS-style list first
    # the classifier's classes are the same node (instantiated with it)
    classes = OmegaConf.to_container(cfg.model.classifier, resolve=True)["classes"]
    assert classes == OmegaConf.to_container(cfg.dataset.vocabulary, resolve=True)
    train = instantiate(cfg.dataset.train, _convert_="partial")
    loader = build_dataloader(train, cfg.dataset, cfg.schedule, True, int(cfg.seed), True)
    n_seg = len(train.datasets[0])
    assert len(loader) == -(-n_seg // 3)
    for batch in loader:
        samples = batch["data_samples"]
        assert [s.gt.masks is None for s in samples] == [False, False, False, True]
        labels = [int(s.gt.labels[0]) for s in samples if s.gt.masks is None]
        assert all(lab in (0, 5) for lab in labels)  # circle, hexagon: indices of the merged vocabulary
