"""OVSAM through forge-test on a tiny seeded model and the synthetic shapes set (COCO format), against slow, obvious
computations: per-instance IoU by pixel counts, labels from ``CLIP2SAM.predict`` one prompt at a time, mask AP from
pycocotools on the same predictions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict

from denseclip import build_clip, save_clip
from edgesam.transforms import ResizeLongestSide
from ovsam import CLIP2SAM, CLIPResNetBackbone
from ovsam.builders import text_classifier
from ovsam.evaluate import OVSAMEvaluator, class_split
from ovsam.fusion import top_labels
from ovsam.model import preprocess

from .tiny import INPUT, TINY_RN

SHAPES = ["circle", "square", "triangle", "star", "cross"]
BASE, NOVEL = ["circle", "square", "triangle"], ["star"]  # "cross": in neither split -> not evaluated
SMALL = dict(embed_dim=64, input_size=INPUT, sam2clip_kwargs=dict(num_heads=4, depth=2, global_attn_indexes=[1]))


def seeded_model(seed: int = 0) -> tuple[CLIP2SAM, torch.nn.Module]:
    """A tiny CLIP and a CLIP2SAM on its image tower (shared modules), BatchNorm statistics of O(1)."""
    torch.manual_seed(seed)
    clip = build_clip(TINY_RN).eval()
    model = CLIP2SAM(CLIPResNetBackbone(clip.visual), **SMALL).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
    return model, clip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Shapes set, and the release layout: CLIP file, SAM2CLIP file, SAM (prompt encoder) file, CLIP2SAM file
    holding only the trained parts."""
    from forge.data.shapes import make_shapes

    root = tmp_path_factory.mktemp("ovsam_eval")
    make_shapes(str(root / "shapes"), num_train=1, num_val=3, size=96, seed=0)
    model, clip = seeded_model()
    save_clip(clip, str(root / "clip.pt"))
    state = model.state_dict()
    torch.save({"neck_student." + k[5:]: v for k, v in state.items() if k.startswith("neck.")}, root / "s2c.pth")
    torch.save({"prompt_encoder." + k[3:]: v for k, v in state.items() if k.startswith("pe.")}, root / "sam.pth")
    torch.save({k: v for k, v in state.items() if k.startswith(("fpn_neck.", "mask_decoder."))}, root / "c2s.pth")
    return {k: str(root / v) for k, v in dict(root="shapes", clip="clip.pt", sam2clip="s2c.pth", sam="sam.pth",
                                              ckpt="c2s.pth", cache="cache").items()}


def compose(experiment: str, files: dict, work, extra=()):
    from tests.forge.helpers import compose_cfg

    cfg = compose_cfg([f"experiment=ovsam/{experiment}", "dataset=shapes", f"dataset.root={files['root']}",
                       f"checkpoint={files['ckpt']}", f"work_dir={work}", "runtime.device=cpu",
                       "schedule.num_workers=0", "runtime.vis.tensorboard=false", *extra], "test")
    with open_dict(cfg):
        OmegaConf.update(cfg, "model.model", dict(clip=files["clip"], arch=TINY_RN, sam2clip=files["sam2clip"],
                                                  sam=files["sam"], **SMALL), merge=True)
        cfg.model.classifier.update(templates=["a {}."], cache_dir=files["cache"])
        cfg.model.prompt_batch = 2  # several chunks per image
    return cfg


def split_overrides(cfg) -> None:
    with open_dict(cfg):
        cfg.model.update(base_classes=BASE, novel_classes=NOVEL)
        cfg.dataset.evaluator = [{"_target_": "forge.evaluation.prompt.PromptSegMetric", "novel_classes": NOVEL}]


def reference(files: dict, mode: str) -> dict[str, float]:
    """One prompt per ``CLIP2SAM.predict`` call, pixel-count IoU, the official label rule, plain means."""
    from forge.data.coco_dataset import CocoInstanceDataset

    model, _ = seeded_model()
    classifier = text_classifier(files["clip"], SHAPES, templates=["a {}."], cache_dir=files["cache"])
    base, evaluated = class_split(5, BASE, NOVEL, SHAPES)
    ds = CocoInstanceDataset(os.path.join(files["root"], "annotations", "instances_val.json"),
                             os.path.join(files["root"], "val"), pipeline=None, classes=SHAPES)
    ious, correct, is_novel = [], [], []
    for i in range(len(ds)):
        item = ds[i]
        img, gt = item["inputs"], item["data_samples"].gt
        h, w = img.shape[1:]
        x, (rh, rw) = preprocess(img.permute(1, 2, 0).numpy(), INPUT)
        resize = ResizeLongestSide(INPUT)
        for j in range(len(gt.labels)):
            label = int(gt.labels[j])
            if gt.iscrowd[j] or not gt.masks[j].any() or not evaluated[label]:
                continue
            box = resize.apply_boxes(gt.boxes[j:j + 1].float(), (h, w))
            if mode == "box":
                pred = model.predict(x, classifier, boxes=box, base=base)
            else:
                from edgesam.prompts import center_points

                small = F.interpolate(gt.masks[j:j + 1, None].float(), (rh, rw), mode="nearest")[:, 0] > 0.5
                pred = model.predict(x, classifier, points=center_points(small), base=base, clip_boxes=box)
            up = F.interpolate(pred.low_res_masks, size=(INPUT, INPUT), mode="bilinear", align_corners=False)
            up = F.interpolate(up[..., :rh, :rw], size=(h, w), mode="bilinear", align_corners=False)
            mask = (up[0, 0].sigmoid() > 0.5).numpy()
            g = gt.masks[j].numpy()
            union = np.logical_or(mask, g).sum()
            if union:
                ious.append(np.logical_and(mask, g).sum() / union)
                is_novel.append(SHAPES[label] in NOVEL)
            scores = pred.scores.clone()
            scores[:, :-1][:, ~evaluated] = -1000.0
            correct.append(int(top_labels(scores, 1)[1][0, 0]) == label)
    ious, is_novel = np.array(ious), np.array(is_novel)
    assert is_novel.any() and (~is_novel).any()
    return {"mIoU": ious.mean(), "mIoU_base": ious[~is_novel].mean(), "mIoU_novel": ious[is_novel].mean(),
            "acc": np.mean(correct)}


@pytest.mark.parametrize("experiment", ["eval_coco_box", "eval_coco_center_point"])
def test_base_novel_iou_and_accuracy_equal_the_slow_computation(files, tmp_path, experiment):
    from forge.cli.test import run_test

    cfg = compose(experiment, files, tmp_path)
    split_overrides(cfg)
    metrics = run_test(cfg)
    want = reference(files, "box" if experiment.endswith("box") else "center_point")
    for key, value in want.items():
        assert metrics[f"prompt/{key}"] == pytest.approx(value, abs=1e-9), key
    assert 0.0 <= metrics["prompt/acc_top5"] <= 1.0


def test_detector_boxes_mask_ap_equals_pycocotools(files, tmp_path):
    from hydra.utils import instantiate
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from forge.cli.test import run_test
    from forge.ops.masks import mask_to_rle

    ann = os.path.join(files["root"], "annotations", "instances_val.json")
    with open(ann) as f:
        gt = json.load(f)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": round(0.99 - 0.01 * k, 3),
             "bbox": [a["bbox"][0] + 1, a["bbox"][1], a["bbox"][2], a["bbox"][3] - 1]}
            for k, a in enumerate(gt["annotations"])]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    cfg = compose("eval_coco_detector_boxes", files, tmp_path / "ap", [f"detections={det_file}"])
    metrics = run_test(cfg)
    # the same predictions, scored by pycocotools directly
    model = instantiate(cfg.model, _convert_="partial")
    model.load_state_dict({**model.state_dict(), **{f"model.{k}": v for k, v in torch.load(files["ckpt"]).items()}})
    ds = instantiate(cfg.dataset.test, _convert_="partial")
    cat_ids = sorted(c["id"] for c in gt["categories"])
    results = []
    for i in range(len(ds)):
        item = ds[i]
        pred = model([item["inputs"]], [item["data_samples"]])[0].pred
        assert pred.scores.tolist() == sorted(pred.scores.tolist(), reverse=True)  # the detector's scores kept
        for rle, s, lab in zip(mask_to_rle(pred.masks), pred.scores.tolist(), pred.labels.tolist()):
            rle = dict(rle, counts=rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"])
            results.append({"image_id": int(item["data_samples"].meta.image_id), "category_id": cat_ids[lab],
                            "segmentation": rle, "score": s})
    coco = COCO(ann)
    ev = COCOeval(coco, coco.loadRes(results), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert metrics["coco/segm_mAP"] == pytest.approx(ev.stats[0], abs=1e-4)
    assert len(results) == len(dets)


def test_official_layout_needs_the_side_files(files, tmp_path):
    from hydra.utils import instantiate

    from forge.config import ConfigError

    cfg = compose("eval_coco_box", files, tmp_path)
    split_overrides(cfg)
    with open_dict(cfg):
        cfg.model.model.sam = None
    model = instantiate(cfg.model, _convert_="partial")
    assert isinstance(model, OVSAMEvaluator) and model.model.preloaded == ["backbone", "neck"]
    with pytest.raises(ConfigError, match="model.model.sam=FILE"):
        model.adapt_state_dict(torch.load(files["ckpt"]))
    assert model.adapt_state_dict(model.state_dict()) is None  # our own checkpoints load as they are


def test_sam2clip_from_our_distillation_checkpoint(files, tmp_path):
    from ovsam.builders import build_clip2sam

    model, _ = seeded_model()
    neck = {f"student.neck_student.{k[5:]}": v for k, v in model.state_dict().items() if k.startswith("neck.")}
    teacher = {"teacher.model.image_encoder.pos_embed": torch.zeros(1)}  # the distiller's other keys are ignored
    path = tmp_path / "epoch_24.pth"
    torch.save({"state_dict": {**neck, **teacher}, "meta": {}}, path)
    built = build_clip2sam(arch=TINY_RN, sam2clip=str(path), **SMALL)
    assert built.preloaded == ["neck"]
    for k, v in built.neck.state_dict().items():
        torch.testing.assert_close(v, model.neck.state_dict()[k])
