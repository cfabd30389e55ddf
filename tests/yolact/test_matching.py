"""Anchor matching on hand-built cases."""

from __future__ import annotations

import torch

from yolact.box_coding import xyxy_to_cxcywh
from yolact.matching import match_anchors


def anchors_from_xyxy(boxes):
    return xyxy_to_cxcywh(torch.tensor(boxes, dtype=torch.float32))


def test_thresholds_positive_neutral_negative():
    gt = torch.tensor([[0.0, 0.0, 0.4, 0.4]])
    anchors = anchors_from_xyxy([
        [0.0, 0.0, 0.4, 0.4],    # IoU 1 -> positive (also the forced best)
        [0.0, 0.0, 0.4, 0.24],   # IoU 0.6 -> positive
        [0.0, 0.0, 0.4, 0.18],   # IoU 0.45 -> neutral
        [0.0, 0.0, 0.4, 0.1],    # IoU 0.25 -> background
        [0.6, 0.6, 1.0, 1.0],    # no overlap -> background
    ])
    conf, idx = match_anchors(gt, torch.tensor([4]), anchors)
    assert conf.tolist() == [5, 5, -1, 0, 0]
    assert idx.tolist() == [0] * 5


def test_forced_best_anchor_assignment_even_below_thresholds():
    # the GT overlaps every anchor below 0.4 but still gets its best anchor as a positive
    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    anchors = anchors_from_xyxy([[0.0, 0.0, 0.6, 0.6], [0.1, 0.1, 0.5, 0.5], [0.7, 0.7, 0.9, 0.9]])
    conf, idx = match_anchors(gt, torch.tensor([0]), anchors)
    assert conf.tolist() == [1, 0, 0]  # IoU 1/9 for anchor 0 -> forced; anchor 1 IoU 0.01/0.2 -> background


def test_two_gts_competing_for_one_anchor_best_pair_first():
    # anchor 0 is the best anchor of both GTs; GT 1 overlaps it more, so it takes anchor 0 first and GT 0 gets its
    # second best anchor (anchor 1), even though GT 0 overlaps anchor 0 with IoU >= 0.5 too.
    gts = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5]])
    anchors = anchors_from_xyxy([[0.04, 0.0, 0.54, 0.5], [0.0, 0.1, 0.5, 0.5], [0.8, 0.8, 1.0, 1.0]])
    conf, idx = match_anchors(gts, torch.tensor([2, 7]), anchors)
    assert idx[0] == 1 and conf[0] == 8
    assert idx[1] == 0 and conf[1] == 3
    assert conf[2] == 0


def test_crowd_rule_makes_covered_non_positives_neutral():
    gt = torch.tensor([[0.0, 0.0, 0.3, 0.3]])
    crowd = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    anchors = anchors_from_xyxy([
        [0.0, 0.0, 0.3, 0.3],   # positive, not covered
        [0.6, 0.6, 0.8, 0.8],   # background, fully inside the crowd -> neutral
        [0.4, 0.4, 0.6, 0.6],   # background, crowd covers 1/4 of it -> stays background
        [0.45, 0.5, 0.65, 0.7],  # covered 0.75 of its area (> 0.7) -> neutral
    ])
    conf, _ = match_anchors(gt, torch.tensor([1]), anchors, crowd)
    assert conf.tolist() == [2, -1, 0, -1]
    conf, _ = match_anchors(gt, torch.tensor([1]), anchors, crowd, crowd_iou=1.0)  # rule disabled
    assert conf.tolist() == [2, 0, 0, 0]
    # a positive inside a crowd stays positive
    conf, _ = match_anchors(torch.tensor([[0.6, 0.6, 0.8, 0.8]]), torch.tensor([0]), anchors, crowd)
    assert conf[1] == 1
