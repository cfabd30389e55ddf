"""CrowdHuman MR^-2 (and AP / recall) against a slow, obvious version of the official formula on seeded random crowds.

The official CrowdHuman / CrowdDet ``compute_APMR`` rule: per image, detections by descending score take the free
non-ignored person of largest IoU > 0.5 (true positive), else are dropped when their IoA with an ignore region is
> 0.5, else are false positives; all images pooled by descending score; at each of the nine FPPI reference points
``10^-2, 10^-1.75, ..., 10^0`` the miss rate ``1 - TP / #persons`` is read at the **first** point whose FPPI
(``FP / #images``) reaches the reference (else the last point), and MR^-2 is the log-average of the nine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from forge.data.crowdhuman_reader import DTRecord, GTRecord
from forge.evaluation.crowdhuman import evaluate
from forge.evaluation.crowdhuman.apmr import MR_REFS

W, H = 320.0, 240.0


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-6)


def _ioa(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + 1e-6)


def _clip(b):
    x1, y1, x2, y2 = b
    return [min(max(x1, 0.0), W - 1), min(max(y1, 0.0), H - 1), max(min(x2, W), 0.0), max(min(y2, H), 0.0)]


def slow_apmr(gts: list[GTRecord], dts: list[DTRecord]) -> tuple[float, float, float]:
    """``(AP, recall, MR^-2)`` one detection at a time, as the official scripts describe them."""
    pooled = []  # (score, label) with label 1 TP, 0 FP, -1 ignored, in image order
    n_pos = 0
    for g, d in zip(gts, dts, strict=True):
        persons = [_clip([x, y, x + w, y + h]) for (x, y, w, h), ign in zip(g.fbox, g.ignore) if not ign]
        ignores = [_clip([x, y, x + w, y + h]) for (x, y, w, h), ign in zip(g.fbox, g.ignore) if ign]
        n_pos += len(persons)
        order = sorted(range(len(d.scores)), key=lambda i: -d.scores[i])  # stable
        free = [True] * len(persons)
        for i in order:
            x, y, w, h = d.boxes[i]
            b = _clip([x, y, x + w, y + h])
            best, j_best = 0.5, -1
            for j, p in enumerate(persons):
                v = _iou(b, p)
                if free[j] and v > best:
                    best, j_best = v, j
            if j_best >= 0:
                free[j_best] = False
                pooled.append((d.scores[i], 1))
            elif any(_ioa(b, r) > 0.5 for r in ignores):
                pooled.append((d.scores[i], -1))
            else:
                pooled.append((d.scores[i], 0))
    pooled.sort(key=lambda t: -t[0])  # stable: ties keep image, then within-image order
    tp = fp = 0
    fppi, miss, rec, prec = [], [], [], []
    for _, label in pooled:
        tp += label == 1
        fp += label == 0
        fppi.append(fp / len(gts))
        miss.append(1.0 - tp / n_pos)
        if label != -1:  # the AP curve has one point per kept detection
            rec.append(tp / n_pos)
            prec.append(tp / (tp + fp))
    ap = sum((rec[i] - rec[i - 1]) * (prec[i - 1] + prec[i]) / 2 for i in range(1, len(rec)))
    samples = []
    for ref in MR_REFS:
        k = next((i for i, f in enumerate(fppi) if f >= ref), len(fppi) - 1)
        samples.append(miss[k])
    mr = math.exp(sum(math.log(s) if s > 0 else -math.inf for s in samples) / len(samples))
    return ap, rec[-1], mr


def random_crowds(seed: int, n_images: int) -> tuple[list[GTRecord], list[DTRecord]]:
    """Crowded persons, ignore regions, jittered and duplicate detections, false positives, rounded (tied) scores."""
    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for k in range(n_images):
        n = int(rng.integers(0, 9))
        x = rng.uniform(-10, W - 40, n)
        bw = rng.uniform(20, 70, n)
        boxes = np.stack([x, rng.uniform(-10, H - 100, n), bw, bw * rng.uniform(2.0, 3.0, n)], 1)
        ign = rng.random(n) < 0.12
        gts.append(GTRecord(ID=str(k), fbox=boxes, vbox=boxes.copy(), hbox=boxes.copy(),
                            tags=["mask" if i else "person" for i in ign], ignore=ign, head_ignore=ign.copy(),
                            width=W, height=H))
        det = []
        for b in boxes:
            for _ in range(int(rng.integers(0, 3))):  # misses, hits and duplicates
                det.append(b + rng.normal(0, 4, 4) * [1, 1, 0.5, 0.5])
        for _ in range(int(rng.integers(0, 3))):
            det.append([rng.uniform(0, W - 40), rng.uniform(0, H - 80), rng.uniform(15, 60), rng.uniform(40, 120)])
        det = np.asarray(det, dtype=np.float64).reshape(-1, 4)
        det[:, 2:] = np.maximum(det[:, 2:], 1.0)
        scores = np.round(rng.beta(2, 1, det.shape[0]), 2)
        dts.append(DTRecord(ID=str(k), boxes=det, scores=scores, width=W, height=H))
    return gts, dts


def test_reference_points_are_the_nine_log_spaced_fppi():
    # written to 3-4 significant digits in the official scripts (0.0316 for 10^-1.5 = 0.031623)
    assert len(MR_REFS) == 9
    assert np.allclose(MR_REFS, 10 ** np.linspace(-2, 0, 9), rtol=1e-3, atol=0)


@pytest.mark.parametrize("seed, n_images", [(0, 5), (1, 40), (2, 100), (3, 300)])
def test_mr2_ap_recall_match_the_slow_official_formula(seed, n_images):
    gts, dts = random_crowds(seed, n_images)
    r = evaluate(gts, dts, box_type="fbox")
    ap, recall, mr = slow_apmr(gts, dts)
    assert r["num_fp"] > 0 and 0 < r["recall"] < 1  # the case exercises misses and false positives
    assert r["MR-2"] == pytest.approx(mr, abs=1e-12)
    assert r["AP"] == pytest.approx(ap, abs=1e-12)
    assert r["recall"] == pytest.approx(recall, abs=1e-12)


def test_mr2_reads_the_first_point_at_or_past_each_fppi():
    """100 images, 10 persons found at scores 1.0..0.91 then one FP, 10 more persons, one FP, the rest missed:
    FPPI 0.01 is reached by the first FP (miss 1 - 10/40), 0.0178 .. 1 by the second or never (then the last
    point, miss 1 - 20/40)."""
    gts, dts = [], []
    for k in range(100):
        boxes = np.array([[10, 10, 40, 100]], dtype=np.float64) if k < 40 else np.zeros((0, 4))
        none = np.zeros(len(boxes), bool)
        gts.append(GTRecord(ID=str(k), fbox=boxes, vbox=boxes.copy(), hbox=boxes.copy(), tags=["person"] * len(boxes),
                            ignore=none, head_ignore=none.copy(), width=W, height=H))
        if k < 20:
            s = [1.0 - 0.01 * k] if k < 10 else [0.8 - 0.01 * k]
            dts.append(DTRecord(ID=str(k), boxes=boxes.copy(), scores=np.array(s), width=W, height=H))
        elif k in (50, 51):
            dts.append(DTRecord(ID=str(k), boxes=np.array([[200.0, 10, 40, 100]]),
                                scores=np.array([0.9 if k == 50 else 0.5]), width=W, height=H))
        else:
            dts.append(DTRecord(ID=str(k), boxes=np.zeros((0, 4)), scores=np.zeros(0), width=W, height=H))
    expect = math.exp((math.log(0.75) + 8 * math.log(0.5)) / 9)
    assert evaluate(gts, dts)["MR-2"] == pytest.approx(expect, abs=1e-12)
    assert slow_apmr(gts, dts)[2] == pytest.approx(expect, abs=1e-12)
