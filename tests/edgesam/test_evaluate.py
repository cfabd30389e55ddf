"""edgesam.evaluate: PromptSegmenter's prompts and masks (against Sam's own batched forward), the refinement loop,
detector boxes, TeacherEncoder for the embedding cache, and real forge-test runs on a generated shapes set with a
small seeded SAM."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from edgesam.build import sam_from_encoder
from edgesam.evaluate import PromptSegmenter, TeacherEncoder, load_detections, resize_image
from edgesam.image_encoder import ImageEncoderViT
from edgesam.prompts import center_points
from edgesam.transforms import ResizeLongestSide
from forge.data.collate import collate_detection
from forge.data.structures import DetSample, ImageMeta, Instances

H, W = 48, 80  # non-square; input 64 -> resized 38 x 64
ENCODER = dict(img_size=64, embed_dim=32, depth=2, num_heads=2, window_size=2, global_attn_indexes=[1])


def tiny_sam(seed: int = 0):
    torch.manual_seed(seed)
    return sam_from_encoder(ImageEncoderViT(**ENCODER), 64).eval()


def _rect_masks(rects, h=H, w=W):
    m = torch.zeros((len(rects), h, w), dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        m[k, y0:y1, x0:x1] = True
    return m


def _sample(image_id=7, rects=((5, 4, 30, 20), (40, 10, 70, 40), (10, 25, 20, 45)), crowd=(False, False, False),
            h=H, w=W):
    masks = _rect_masks(rects, h, w)
    gt = Instances(boxes=torch.tensor(rects, dtype=torch.float32), labels=torch.arange(len(rects)), masks=masks,
                   iscrowd=torch.tensor(crowd), ann_ids=torch.arange(len(rects)))
    meta = ImageMeta(image_id=image_id, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))
    g = torch.Generator().manual_seed(image_id)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    return img, DetSample(meta=meta, gt=gt)


def test_box_masks_equal_sams_batched_forward():
    sam = tiny_sam()
    img, s = _sample()
    out = PromptSegmenter(sam, mode="box")(img[None], [s])[0]
    assert out["pred_masks"].shape == (3, H, W) and out["pred_masks"].dtype == torch.bool
    assert torch.equal(out["gt_masks"], s.gt.masks) and torch.equal(out["gt_labels"], torch.arange(3))
    # reference: the official-style batched Sam.forward on the same resized image and boxes
    t = ResizeLongestSide(64)
    ref = sam([{"image": resize_image(img, 64), "original_size": (H, W),
                "boxes": t.apply_boxes(s.gt.boxes, (H, W))}], multimask_output=False)[0]["masks"][:, 0]
    assert torch.equal(out["pred_masks"], ref)
    assert 0 < ref.float().mean() < 1  # the seeded model's masks are not trivially empty or full
    # multimask: the output of highest predicted IoU
    ref3 = sam([{"image": resize_image(img, 64), "original_size": (H, W),
                 "boxes": t.apply_boxes(s.gt.boxes, (H, W))}], multimask_output=True)[0]
    best = ref3["masks"][torch.arange(3), ref3["iou_predictions"].argmax(1)]
    assert torch.equal(PromptSegmenter(sam, mode="box", multimask=True)(img[None], [s])[0]["pred_masks"], best)


def test_batches_crowd_empty_and_max_prompts():
    sam = tiny_sam()
    model = PromptSegmenter(sam, mode="box", prompt_batch=2)
    a = _sample(1)
    b = _sample(2, rects=((3, 3, 20, 20), (0, 0, 0, 0), (30, 5, 50, 30)), crowd=(False, False, True), h=40, w=60)
    alone = [model(img[None], [s])[0] for img, s in (a, b)]
    batch = collate_detection([dict(inputs=a[0], data_samples=a[1]), dict(inputs=b[0], data_samples=b[1])])
    together = model(batch["inputs"], batch["data_samples"])
    for x, y in zip(alone, together):
        assert torch.equal(x["pred_masks"], y["pred_masks"]) and torch.equal(x["gt_masks"], y["gt_masks"])
    # image b: the empty mask and the crowd region are not prompts
    assert together[1]["pred_masks"].shape == (1, 40, 60) and together[1]["gt_labels"].tolist() == [0]

    rects = tuple((4 * k, 2, 4 * k + 3, 30) for k in range(10))
    img, s = _sample(5, rects=rects, crowd=(False,) * 10)
    pick = [PromptSegmenter(sam, max_prompts=4, seed=seed)(img[None], [s])[0]["gt_labels"] for seed in (0, 0, 1)]
    assert pick[0].tolist() == sorted(set(pick[0].tolist())) and len(pick[0]) == 4  # without replacement
    assert torch.equal(pick[0], pick[1]) and not torch.equal(pick[0], pick[2])


class _Recorder:
    """Stands in for PromptSegmenter._decode: records the prompts, returns constant low-res logits."""

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, []

    def __call__(self, emb, points, boxes):
        self.calls.append((None if points is None else (points[0].cpu(), points[1].cpu()),
                           None if boxes is None else boxes.cpu()))
        n = (boxes if boxes is not None else points[0]).shape[0]
        return torch.full((n, 16, 16), self.value)


def _input_gt(masks):
    return F.interpolate(masks[:, None].float(), (38, 64), mode="nearest")[:, 0] > 0.5


def test_point_prompts_are_in_the_input_frame():
    img, s = _sample()
    model = PromptSegmenter(tiny_sam(), mode="center_point")
    model._decode = rec = _Recorder(-5.0)
    model(img[None], [s])
    (pts, labels), boxes = rec.calls[0]
    assert boxes is None and (labels == 1).all() and pts.shape == (3, 1, 2)
    assert torch.equal(pts, center_points(_input_gt(s.gt.masks)))
    model = PromptSegmenter(tiny_sam(), mode="point")
    model._decode = rec = _Recorder(-5.0)
    model(img[None], [s])
    pts = rec.calls[0][0][0]
    gt_in = _input_gt(s.gt.masks)
    assert gt_in[torch.arange(3), pts[:, 0, 1].long(), pts[:, 0, 0].long()].all()


@pytest.mark.parametrize("value,label", [(-5.0, 1), (5.0, 0)])
def test_refinement_adds_error_region_points(value, label):
    img, s = _sample(rects=((5, 4, 30, 20), (40, 10, 70, 40), (10, 25, 40, 47)))  # each > 10 low-res cells
    model = PromptSegmenter(tiny_sam(), mode="box_refine", refine_iters=2)
    model._decode = rec = _Recorder(value)
    model(img[None], [s])
    assert len(rec.calls) == 3 and rec.calls[0][0] is None
    t = ResizeLongestSide(64)
    for k, (points, boxes) in enumerate(rec.calls):
        assert torch.equal(boxes, t.apply_boxes(s.gt.boxes, (H, W)))  # the box stays
        if k:
            xy, lab = points
            assert xy.shape == (3, k, 2) and (lab == label).all()
    xy = rec.calls[2][0][0]
    assert (xy % 4 == 0).all()  # low-res grid index x 64 / 16
    gt_in = _input_gt(s.gt.masks)
    near = F.max_pool2d(gt_in[:, None].float(), 9, 1, 4)[:, 0] > 0  # within one low-res cell of the GT
    inside = near[torch.arange(3)[:, None], xy[..., 1].long(), xy[..., 0].long()]
    if label == 1:  # the prediction is empty: clicks on missed GT
        assert inside.all()
    else:  # the prediction covers everything: clicks off the GT, inside the resized image (38 rows)
        assert (~gt_in[torch.arange(3)[:, None], xy[..., 1].long(), xy[..., 0].long()]).all()
        assert (xy[..., 1] < 40).all()
    with pytest.raises(ValueError, match="box_refine needs >= 1"):
        PromptSegmenter(tiny_sam(), mode="box_refine")
    with pytest.raises(ValueError, match="mode='lasso' is invalid"):
        PromptSegmenter(tiny_sam(), mode="lasso")


def _write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


def test_load_detections(tmp_path):
    ann = _write(tmp_path / "gt.json", {"images": [], "annotations": [], "categories": [{"id": 4, "name": "a"},
                                                                                        {"id": 2, "name": "b"}]})
    dets = [{"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4], "score": 0.5},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9},
            {"image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.01}]
    out, cat_ids = load_detections(_write(tmp_path / "d.json", dets), ann, score_thr=0.05)
    assert cat_ids == [2, 4] and set(out) == {1}
    boxes, scores, labels = out[1]
    assert boxes.tolist() == [[0, 0, 5, 5], [1, 2, 4, 6]] and scores.tolist() == pytest.approx([0.9, 0.5])
    assert labels.tolist() == [0, 1]
    for bad, msg in [({"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}, "result #0 has no 'category_id'"),
                     ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1},
                      "result #0: category_id 3 is not a category of"),
                     ({"image_id": 1, "category_id": 2, "bbox": [0, 0, -1, 1], "score": 1}, "'bbox' must be")]:
        with pytest.raises(ValueError, match=msg):
            load_detections(_write(tmp_path / "bad.json", [bad]), ann)


def test_teacher_encoder_embeddings():
    from forge.embedding_cache import teacher_fingerprint

    sam = tiny_sam()
    img, _ = _sample()
    teacher = TeacherEncoder(sam=sam)
    out = teacher([img, img[:, :30, :50]])
    assert out.shape == (2, 256, 4, 4) and teacher.input_size == 64
    want = sam.image_encoder(sam.preprocess(resize_image(img, 64))[None])[0]
    assert torch.allclose(out[0], want, atol=1e-5)  # batched (2 images) vs alone: float rounding only
    assert teacher_fingerprint(teacher)[0] != teacher_fingerprint(TeacherEncoder(sam=tiny_sam(1)))[0]


# ------------------------------------------------------------------------------------------------ forge-test runs
SAM_NODE = ("+model.sam={_target_: edgesam.build.sam_from_encoder, image_size: 64, image_encoder: "
            "{_target_: edgesam.image_encoder.ImageEncoderViT, img_size: 64, embed_dim: 32, depth: 2, num_heads: 2, "
            "window_size: 2, global_attn_indexes: [1]}}")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from forge.data.shapes import make_shapes

    root = tmp_path_factory.mktemp("shapes")
    make_shapes(str(root), num_train=1, num_val=3, size=96, seed=0)
    ckpt = root / "tiny_sam.pth"
    torch.save(tiny_sam(3).state_dict(), ckpt)  # the official layout: image_encoder.*, prompt_encoder.*, ...
    return str(root), str(ckpt)


def _forge_test(experiment, root, ckpt, work, extra=()):
    from forge.cli.test import run_test
    from tests.forge.helpers import compose_cfg

    cfg = compose_cfg([f"experiment=edgesam/{experiment}", "dataset=shapes", f"dataset.root={root}", "~model.sam",
                       SAM_NODE, f"checkpoint={ckpt}", f"work_dir={work}", "runtime.device=cpu",
                       "schedule.num_workers=0", "runtime.vis.tensorboard=false", *extra], "test")
    return run_test(cfg)


def test_forge_test_prompt_miou(shapes, tmp_path):
    root, ckpt = shapes
    metrics = _forge_test("eval_coco_box_2points", root, ckpt, tmp_path / "refine")
    assert set(metrics) >= {"prompt/mIoU", "prompt/mIoU_small", "prompt/mIoU_medium", "prompt/mIoU_large"}
    assert 0.0 <= metrics["prompt/mIoU"] <= 1.0
    with open(tmp_path / "refine" / "test_metrics.json") as f:
        assert json.load(f)["prompt/mIoU"] == pytest.approx(metrics["prompt/mIoU"])
    centre = _forge_test("eval_coco_center_point", root, ckpt, tmp_path / "centre")
    assert 0.0 <= centre["prompt/mIoU"] <= 1.0 and centre["prompt/mIoU"] != metrics["prompt/mIoU"]


def test_forge_test_detector_boxes_mask_ap(shapes, tmp_path):
    from forge.config import ConfigError

    root, ckpt = shapes
    with open(os.path.join(root, "annotations", "instances_val.json")) as f:
        gt = json.load(f)
    # a "detector": the GT boxes, slightly shifted, with decreasing scores
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0 - 0.01 * k,
             "bbox": [a["bbox"][0] + 1, a["bbox"][1], a["bbox"][2], a["bbox"][3]]}
            for k, a in enumerate(gt["annotations"])]
    det_file = _write(tmp_path / "dets.json", dets)
    metrics = _forge_test("eval_coco_detector_boxes", root, ckpt, tmp_path / "ap", [f"model.detections={det_file}"])
    assert 0.0 <= metrics["coco/segm_mAP"] <= 1.0 and metrics["coco/bbox_mAP"] > 0.5  # shifted GT boxes
    # a checkpoint of another architecture is refused, naming the file
    other = tmp_path / "other.pth"
    torch.save({k: v for k, v in tiny_sam().state_dict().items() if not k.startswith("mask_decoder.")}, other)
    with pytest.raises(ConfigError, match="other.pth"):
        _forge_test("eval_coco_box", root, str(other), tmp_path / "bad")


EVAL_EXPERIMENTS = [f"eval_{d}_{p}" for d in ("coco", "lvis", "sa1k") for p in ("box", "box_2points", "center_point")]


@pytest.mark.parametrize("experiment", EVAL_EXPERIMENTS + ["eval_coco_detector_boxes"])
def test_eval_experiments_compose(experiment):
    from tests.forge.helpers import compose_cfg

    cfg = compose_cfg([f"experiment=edgesam/{experiment}", "model=edgesam/vit_h"], "test")
    assert cfg.model._target_ == "edgesam.evaluate.PromptSegmenter" and cfg.model.sam.name == "vit_h"
    assert cfg.pipeline.val is None and cfg.runtime.num_vis_images == 0
    metric = cfg.dataset.evaluator[0]._target_
    if experiment == "eval_coco_detector_boxes":
        assert metric == "forge.evaluation.coco.CocoMetric" and set(cfg.paper.mask_AP) >= {"vit_h", "edge_sam"}
        return
    assert metric == "forge.evaluation.prompt.PromptSegMetric"
    assert set(cfg.paper.mIoU) == {"vit_h", "mobile_sam", "edge_sam"}
    mode = {"box": ("box", 0), "box_2points": ("box_refine", 2), "center_point": ("center_point", 0)}
    assert (cfg.model.mode, cfg.model.refine_iters) == mode[experiment.split("_", 2)[2]]
    assert cfg.model.max_prompts == (64 if "sa1k" in experiment else None)


def test_paper_numbers_and_edge_sam_config():
    from hydra.utils import instantiate

    from tests.forge.helpers import compose_cfg

    coco = compose_cfg(["experiment=edgesam/eval_coco_box"], "test").paper.mIoU
    lvis = compose_cfg(["experiment=edgesam/eval_lvis_box"], "test").paper.mIoU
    # the "+2.3 mIoU over MobileSAM on COCO" (GT boxes); on LVIS the table gives +3.1
    assert round(coco.edge_sam - coco.mobile_sam, 1) == 2.3 and round(lvis.edge_sam - lvis.mobile_sam, 1) == 3.1
    cfg = compose_cfg(["experiment=edgesam/eval_coco_center_point"], "test")
    model = instantiate(cfg.model, _convert_="partial")  # the real EdgeSAM, random weights (checkpoint= loads)
    assert isinstance(model, PromptSegmenter) and model.mode == "center_point" and model.sam.img_size == 1024
    state = {k.removeprefix("sam."): v for k, v in model.state_dict().items()}
    state["rpn_head.cls.weight"] = torch.zeros(1)  # an EdgeSAM release's optional RPN keys are dropped
    adapted = model.adapt_state_dict(state)
    assert set(adapted) == set(model.state_dict()) and model.adapt_state_dict(model.state_dict()) is None
