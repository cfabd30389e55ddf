import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from forge.evaluation.semseg import (
    SemSegMetric,
    confusion_matrix,
    harmonic_mean,
    semseg_metrics,
    zero_shot_split,
)

IGNORE = 255


def _slow(preds, gts, num_classes, ignore=IGNORE):
    """Independent reference: per-class pixel loops in numpy over all images."""
    tp = np.zeros(num_classes)
    fp = np.zeros(num_classes)
    fn = np.zeros(num_classes)
    correct = valid_total = 0
    for pred, gt in zip(preds, gts):
        valid = gt != ignore
        correct += int(((pred == gt) & valid).sum())
        valid_total += int(valid.sum())
        for c in range(num_classes):
            tp[c] += ((pred == c) & (gt == c) & valid).sum()
            fp[c] += ((pred == c) & (gt != c) & valid).sum()
            fn[c] += ((pred != c) & (gt == c) & valid).sum()
    iou = np.array([tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else np.nan for c in range(num_classes)])
    acc = np.array([tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else np.nan for c in range(num_classes)])
    return iou, acc, correct / valid_total


def _random_images(num_classes=6, n=4, seed=0):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for i in range(n):
        h, w = 13 + i, 17 + 2 * i
        gt = rng.integers(0, num_classes - 1, size=(h, w))  # class C-1 never in GT
        gt[rng.random((h, w)) < 0.15] = IGNORE
        noise = rng.integers(0, num_classes - 2, (h, w))
        pred = np.where(rng.random((h, w)) < 0.6, np.where(gt == IGNORE, 0, gt), noise)
        preds.append(pred)
        gts.append(gt)
    return preds, gts


def test_confusion_matrix_matches_cell_loop():
    preds, gts = _random_images()
    conf = confusion_matrix(torch.from_numpy(preds[0]), torch.from_numpy(gts[0]), 6, IGNORE)
    assert conf.dtype == torch.int64 and conf.shape == (6, 6)
    valid = gts[0] != IGNORE
    for g in range(6):
        for p in range(6):
            assert conf[g, p] == ((gts[0] == g) & (preds[0] == p) & valid).sum()


def test_metrics_match_slow_reference():
    preds, gts = _random_images()
    conf = sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), 6, IGNORE) for p, g in zip(preds, gts))
    m = semseg_metrics(conf)
    iou, acc, aacc = _slow(preds, gts, 6)
    np.testing.assert_allclose(m["IoU"], iou, equal_nan=True)
    np.testing.assert_allclose(m["Acc"], acc, equal_nan=True)
    assert m["aAcc"] == pytest.approx(aacc)
    assert m["mIoU"] == pytest.approx(np.nanmean(iou))
    assert m["mAcc"] == pytest.approx(np.nanmean(acc))
    # class 5 never occurs in GT nor prediction -> NaN, excluded from the means
    assert math.isnan(m["IoU"][5])


def test_perfect_prediction_and_ignore_pixels():
    gt = torch.tensor([[0, 1, 1], [2, 2, IGNORE], [IGNORE, 0, 1]])
    pred = gt.clone()
    pred[gt == IGNORE] = 3  # whatever is predicted on ignored pixels must not count
    m = semseg_metrics(confusion_matrix(pred, gt, 4, IGNORE))
    assert m["mIoU"] == 1.0 and m["aAcc"] == 1.0 and m["mAcc"] == 1.0
    assert math.isnan(m["IoU"][3]) and math.isnan(m["Acc"][3])  # class 3 absent from GT and (valid) prediction


def test_absent_classes_nan_and_excluded_hand_case():
    # GT: 3 px of class 0, 1 px of class 1; pred: class 0 everywhere except one px predicted as class 2.
    gt = torch.tensor([[0, 0, 0, 1]])
    pred = torch.tensor([[0, 0, 2, 0]])
    m = semseg_metrics(confusion_matrix(pred, gt, 4, IGNORE))
    # class 0: tp 2, fp 1 (the class-1 px), fn 1 -> 2/4; class 1: 0/1; class 2: predicted but not in GT -> 0/1;
    # class 3: absent from both -> NaN.
    np.testing.assert_allclose(m["IoU"], [0.5, 0.0, 0.0, np.nan], equal_nan=True)
    np.testing.assert_allclose(m["Acc"], [2 / 3, 0.0, np.nan, np.nan], equal_nan=True)
    assert m["mIoU"] == pytest.approx(0.5 / 3)
    assert m["mAcc"] == pytest.approx((2 / 3) / 2)
    assert m["aAcc"] == pytest.approx(0.5)


def test_zero_shot_split_and_hiou():
    iou = np.array([0.8, 0.6, np.nan, 0.3, 0.1])
    s, u, h = zero_shot_split(iou, [3, 4])
    assert s == pytest.approx(0.7) and u == pytest.approx(0.2)
    assert h == pytest.approx(2 * 0.7 * 0.2 / 0.9)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_mean(0.5, float("nan")))
    with pytest.raises(ValueError, match="unseen class index 7"):
        zero_shot_split(iou, [7])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="class index 9"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 9), 4, IGNORE)
    with pytest.raises(ValueError, match="prediction holds class index 4"):
        confusion_matrix(torch.full((2, 2), 4), torch.zeros(2, 2, dtype=torch.long), 4, IGNORE)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 4, IGNORE)


def test_metric_through_evaluator_equals_pure_function():
    preds, gts = _random_images(n=5, seed=1)
    names = ("a", "b", "c", "d", "e", "f")
    metric = SemSegMetric(unseen_classes=["e", 1], log_table=True)  # num_classes from dataset_meta
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = {"classes": names}
    samples = [{"pred_sem_seg": torch.from_numpy(p), "gt_sem_seg": torch.from_numpy(g)} for p, g in zip(preds, gts)]
    evaluator.process(samples[:2])
    evaluator.process(samples[2:])
    assert len(metric.results) == 5
    assert all(r.shape == (6, 6) and r.dtype == np.int64 for r in metric.results)
    out = evaluator.evaluate(5)

    conf = sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), 6, IGNORE) for p, g in zip(preds, gts))
    ref = semseg_metrics(conf, unseen_classes=[4, 1])
    assert set(out) == {f"semseg/{k}" for k in ("mIoU", "aAcc", "mAcc", "mIoU_seen", "mIoU_unseen", "hIoU")}
    for k in ("mIoU", "aAcc", "mAcc", "mIoU_seen", "mIoU_unseen", "hIoU"):
        assert out[f"semseg/{k}"] == pytest.approx(ref[k], nan_ok=True)
    iou, _, _ = _slow(preds, gts, 6)
    assert out["semseg/mIoU"] == pytest.approx(np.nanmean(iou))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_matrix_cuda_matches_cpu():
    preds, gts = _random_images()
    p, g = torch.from_numpy(preds[0]), torch.from_numpy(gts[0])
    cpu = confusion_matrix(p, g, 6, IGNORE)
    cuda = confusion_matrix(p.cuda(), g.cuda(), 6, IGNORE)
    assert cuda.is_cuda
    assert torch.equal(cuda.cpu(), cpu)
