"""nohnms.diagnose: the demo's MR^-2 breakdown on hand-built cases and against the evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forge.data.crowdhuman_reader import DTRecord, GTRecord
from forge.evaluation.crowdhuman import evaluate
from nohnms.diagnose import added_detections, hallucination_stats, miss_at_refs
from tests.forge.evaluation.test_crowdhuman_mr2 import random_crowds


def _gt(boxes_xywh, ID="a"):
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    none = np.zeros(len(b), bool)
    return GTRecord(ID=ID, fbox=b, vbox=b.copy(), hbox=b.copy(), tags=["person"] * len(b), ignore=none,
                    head_ignore=none.copy(), width=320, height=240)


def _dt(boxes_xywh, scores, ID="a"):
    return DTRecord(ID=ID, boxes=np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4),
                    scores=np.asarray(scores, dtype=np.float64), width=320, height=240)


@pytest.mark.parametrize("seed", [0, 4])
def test_miss_at_refs_log_average_is_the_evaluators_mr2(seed):
    gts, dts = random_crowds(seed, 60)
    r = evaluate(gts, dts)
    miss, fp_iou = miss_at_refs(gts, dts)
    assert miss.shape == (9,) and bool((np.diff(miss) <= 0).all())  # miss falls as FPPI grows
    assert math.exp(np.log(miss).mean()) == pytest.approx(r["MR-2"], abs=1e-12)
    assert fp_iou.shape == (r["num_fp"],)


def test_false_positives_in_score_order_with_their_best_person_iou():
    gts = [_gt([[10, 10, 40, 100], [100, 10, 40, 100]])]
    # person A found (0.9), a duplicate of A (IoU 0.8, 0.8), a box a quarter on B (0.7), B found last (0.6)
    dup = [10, 10, 40, 80]  # inside A: IoU 3200 / 4000
    side = [130, 10, 40, 100]  # 10 px of B's 40: IoU 1000 / 7000
    dts = [_dt([[10, 10, 40, 100], dup, side, [100, 10, 40, 100]], [0.9, 0.8, 0.7, 0.6])]
    miss, fp_iou = miss_at_refs(gts, dts)
    assert fp_iou == pytest.approx([0.8, 1 / 7], abs=1e-6)
    # one image: FPPI 1 is reached by the first FP (after A: miss 0.5) at every reference point
    assert miss == pytest.approx([0.5] * 9)


def test_added_detections_are_split_by_the_evaluators_matching():
    gts = [_gt([[10, 10, 40, 100], [30, 10, 40, 100]])]  # two persons, IoU 0.33
    dts = [_dt([[10, 10, 40, 100], [30, 10, 40, 100], [12, 10, 40, 100]], [0.9, 0.7, 0.6])]
    kept = {"a": torch.tensor([5, 7, 9])}  # candidate indices of the three boxes
    base = {"a": torch.tensor([5])}  # greedy kept only the first
    out = added_detections(gts, dts, kept, base)
    assert out["tp"].tolist() == [True, False] and out["fp"].tolist() == [False, True]
    assert out["scores"] == pytest.approx([0.7, 0.6])


def test_hallucination_stats_on_a_hand_built_pair():
    persons = torch.tensor([[0.0, 0.0, 40.0, 100.0], [10.0, 0.0, 50.0, 100.0]])  # IoU 30 / 50 = 0.6
    boxes = torch.tensor([[0.0, 0.0, 40.0, 100.0], [200.0, 0.0, 240.0, 100.0]])  # on person 0; on nobody
    hal = torch.tensor([[5.0, 0.0, 45.0, 100.0], [0.0, 0.0, 1.0, 1.0]])  # halfway to the neighbour
    h = hallucination_stats([boxes], [hal], [persons])
    assert h["n"] == 1
    assert h["own_iou"] == pytest.approx(35 / 45)
    assert h["true_iou"] == pytest.approx(0.6)
    assert h["hal_offset"] == pytest.approx(5 / 40) and h["true_offset"] == pytest.approx(10 / 40)
    assert h["same_side"] == 1.0
    assert hallucination_stats([boxes[1:]], [hal[1:]], [persons]) == {"n": 0}
