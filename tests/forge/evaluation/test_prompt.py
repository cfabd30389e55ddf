import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from forge.evaluation.prompt import (
    PromptSegMetric,
    mask_iou,
    prompt_metrics,
    prompt_record,
    size_bucket,
    topk_correct,
)


def _slow_iou(pred, gt):
    """Independent reference: pixel loop per prompt."""
    out = []
    for p, g in zip(pred, gt):
        inter = union = 0
        for a, b in zip(p.reshape(-1), g.reshape(-1)):
            inter += bool(a and b)
            union += bool(a or b)
        out.append(inter / union if union else np.nan)
    return np.array(out)


def _box_masks(boxes, h, w):
    m = np.zeros((len(boxes), h, w), dtype=bool)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        m[i, y0:y1, x0:x1] = True
    return m


def _images(seed=0, n=4, num_classes=7):
    """Random images with GT boxes of all three sizes and perturbed predicted boxes."""
    rng = np.random.default_rng(seed)
    h, w = 120, 130
    out = []
    for i in range(n):
        sides = [(20, 30), (40, 50), (100, 110), (31, 33)][: 2 + i % 3]
        boxes = [(int(rng.integers(0, h - a)), int(rng.integers(0, w - b))) for a, b in sides]
        gt_boxes = [(y, x, y + a, x + b) for (y, x), (a, b) in zip(boxes, sides)]
        pr_boxes = [
            (max(0, y0 + int(rng.integers(-5, 6))), x0, y1, max(x0 + 1, x1 + int(rng.integers(-6, 6))))
            for y0, x0, y1, x1 in gt_boxes
        ]
        p = len(gt_boxes)
        scores = torch.from_numpy(rng.random((p, num_classes))).float()
        out.append(
            {
                "pred_masks": torch.from_numpy(_box_masks(pr_boxes, h, w)),
                "gt_masks": torch.from_numpy(_box_masks(gt_boxes, h, w)),
                "gt_labels": torch.from_numpy(rng.integers(0, num_classes, p)),
                "pred_scores": scores,
                "dataset": "coco" if i % 2 else "lvis",
            }
        )
    return out


def test_mask_iou_matches_pixel_loop_and_empty_is_nan():
    rng = np.random.default_rng(0)
    pred = rng.random((5, 9, 11)) < 0.4
    gt = rng.random((5, 9, 11)) < 0.5
    pred[4] = gt[4] = False  # both empty -> NaN
    iou = mask_iou(torch.from_numpy(pred), torch.from_numpy(gt))
    assert iou.dtype == torch.float64
    np.testing.assert_allclose(iou.numpy(), _slow_iou(pred, gt), equal_nan=True)
    assert math.isnan(iou[4])


def test_perfect_prediction_is_one():
    s = _images(n=1)[0]
    rec = prompt_record(s["gt_masks"], s["gt_masks"], gt_labels=s["gt_labels"], pred_labels=s["gt_labels"])
    m = prompt_metrics([rec])
    assert m["mIoU"] == 1.0 and m["acc"] == 1.0


def test_size_buckets_half_open_coco_thresholds():
    areas = [0, 1, 1023, 1024, 9215, 9216, 10**6]
    assert size_bucket(areas).tolist() == [0, 0, 0, 1, 1, 2, 2]
    # 32x32 box -> medium, 31x33 = 1023 px -> small, 96x96 -> large
    gt = torch.from_numpy(_box_masks([(0, 0, 32, 32), (0, 0, 31, 33), (0, 0, 96, 96)], 100, 100))
    pred = gt.clone()
    pred[0] = False  # IoU 0 for the medium object
    m = prompt_metrics([prompt_record(pred, gt)])
    assert m["mIoU_small"] == 1.0 and m["mIoU_medium"] == 0.0 and m["mIoU_large"] == 1.0
    # gt_areas (e.g. COCO annotation area) overrides the pixel count
    m = prompt_metrics([prompt_record(pred, gt, gt_areas=torch.tensor([10.0, 10.0, 10.0]))])
    assert m["mIoU_small"] == pytest.approx(2 / 3) and math.isnan(m["mIoU_medium"]) and math.isnan(m["mIoU_large"])


def test_topk_and_accuracy_hand_case():
    scores = torch.tensor(
        [[0.1, 0.9, 0.0, 0.2, 0.3, 0.4, 0.5], [0.9, 0.1, 0.0, 0.2, 0.3, 0.4, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]]
    )
    gt_labels = torch.tensor([1, 2, 5])
    assert topk_correct(scores, gt_labels, 1).tolist() == [True, False, False]
    assert topk_correct(scores, gt_labels, 5).tolist() == [True, False, False]
    assert topk_correct(scores, gt_labels, 6).tolist() == [True, False, True]
    masks = torch.ones(3, 4, 4, dtype=torch.bool)
    m = prompt_metrics([prompt_record(masks, masks, gt_labels=gt_labels, pred_scores=scores)])
    assert m["acc"] == pytest.approx(1 / 3) and m["acc_top5"] == pytest.approx(1 / 3)
    # explicit pred_labels win over the scores' argmax for top-1
    m = prompt_metrics([prompt_record(masks, masks, gt_labels=gt_labels, pred_labels=gt_labels, pred_scores=scores)])
    assert m["acc"] == 1.0 and m["acc_top5"] == pytest.approx(1 / 3)


def test_pure_metrics_match_slow_reference_with_splits():
    samples = _images(n=5)
    recs = [prompt_record(**s) for s in samples]
    novel = [1, 4]
    m = prompt_metrics(recs, novel_classes=novel)

    ious, areas, labels, top1, top5, names = [], [], [], [], [], []
    for s in samples:
        ious += list(_slow_iou(s["pred_masks"].numpy(), s["gt_masks"].numpy()))
        areas += [int(g.sum()) for g in s["gt_masks"].numpy()]
        lab = s["gt_labels"].numpy()
        sc = s["pred_scores"].numpy()
        labels += list(lab)
        top1 += list(sc.argmax(1) == lab)
        top5 += [lab[i] in np.argsort(-sc[i])[:5] for i in range(len(lab))]
        names += [s["dataset"]] * len(lab)
    ious, areas, labels = np.array(ious), np.array(areas), np.array(labels)
    top1, top5, names = np.array(top1), np.array(top5), np.array(names)
    assert m["mIoU"] == pytest.approx(ious.mean())
    for name, sel in (("small", areas < 1024), ("medium", (areas >= 1024) & (areas < 9216)), ("large", areas >= 9216)):
        assert sel.any()
        assert m[f"mIoU_{name}"] == pytest.approx(ious[sel].mean())
    assert m["acc"] == pytest.approx(top1.mean()) and m["acc_top5"] == pytest.approx(top5.mean())
    for d in ("coco", "lvis"):
        assert m[f"mIoU_{d}"] == pytest.approx(ious[names == d].mean())
        assert m[f"acc_{d}"] == pytest.approx(top1[names == d].mean())
    is_novel = np.isin(labels, novel)
    assert m["mIoU_base"] == pytest.approx(ious[~is_novel].mean())
    assert m["mIoU_novel"] == pytest.approx(ious[is_novel].mean())
    assert m["acc_novel"] == pytest.approx(top1[is_novel].mean())


def test_bad_input_raises():
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="shape"):
        mask_iou(masks, torch.ones(2, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="threshold"):
        mask_iou(masks.float(), masks)
    with pytest.raises(ValueError, match="gt_labels"):
        prompt_record(masks, masks, pred_labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="collides"):
        prompt_metrics([prompt_record(masks, masks, dataset="small")])


def test_metric_through_evaluator_equals_pure_function():
    samples = _images(n=6, seed=3)
    metric = PromptSegMetric(novel_classes=["c1", 4])
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = {"classes": [f"c{i}" for i in range(7)]}
    evaluator.process(samples[:4])
    evaluator.process(samples[4:])
    assert len(metric.results) == 6
    assert isinstance(metric.results[0]["iou"], np.ndarray)
    out = evaluator.evaluate(6)
    ref = prompt_metrics([prompt_record(**s) for s in samples], novel_classes=[1, 4])
    assert set(out) == {f"prompt/{k}" for k in ref}
    for k, v in ref.items():
        assert out[f"prompt/{k}"] == pytest.approx(v, nan_ok=True)
    for k in ("mIoU", "mIoU_small", "mIoU_medium", "mIoU_large", "acc", "acc_top5", "mIoU_coco", "mIoU_base"):
        assert f"prompt/{k}" in out


def test_novel_by_lvis_frequency():
    samples = _images(n=5, seed=4)
    metric = PromptSegMetric(novel_frequencies=["r"])
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = {"classes": [f"c{i}" for i in range(7)], "frequencies": list("fcrfrcf")}
    evaluator.process(samples)
    out = evaluator.evaluate(5)
    ref = prompt_metrics([prompt_record(**s) for s in samples], novel_classes=[2, 4])
    for k in ("mIoU_base", "mIoU_novel", "acc_base", "acc_novel"):
        assert out[f"prompt/{k}"] == pytest.approx(ref[k], nan_ok=True)
    with pytest.raises(ValueError, match="not both"):
        PromptSegMetric(novel_classes=[1], novel_frequencies=["r"])
    bare = Evaluator([PromptSegMetric(novel_frequencies=["r"])])
    bare.dataset_meta = {"classes": ["a"]}
    bare.process(samples[:1])
    with pytest.raises(ValueError, match="frequencies"):
        bare.evaluate(1)
