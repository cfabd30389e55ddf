"""Fast NMS / class-agnostic Fast NMS / standard NMS against slow references of the same definitions."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from forge.ops.nms import cc_fast_nms, fast_nms, pairwise_iou, standard_nms


def random_boxes(n: int, seed: int, clustered: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand((4, 2), generator=g) * 80 + 10
    c = centers[torch.randint(0, 4, (n,), generator=g)] if clustered else torch.rand((n, 2), generator=g) * 100
    c = c + torch.randn((n, 2), generator=g) * 4
    wh = torch.rand((n, 2), generator=g) * 30 + 5
    return torch.cat([c - wh / 2, c + wh / 2], 1)


def slow_fast_nms(boxes, scores, thr, top_k, max_det):
    """Definition of Fast NMS, one box at a time: per class take the top_k scores; box j is kept iff
    no higher-ranked box i of its class (suppressed or not) has IoU(i, j) > thr."""
    dets = []
    for c in range(scores.shape[1]):
        order = sorted(range(len(boxes)), key=lambda i: -float(scores[i, c]))[:top_k]
        for rank, j in enumerate(order):
            if all(float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) <= thr for i in order[:rank]):
                dets.append((float(scores[j, c]), j, c))
    dets.sort(key=lambda d: -d[0])
    return dets[:max_det]


def slow_greedy_nms(boxes, scores, thr, score_thr, max_det):
    dets = []
    for c in range(scores.shape[1]):
        cand = [i for i in range(len(boxes)) if float(scores[i, c]) > score_thr]
        cand.sort(key=lambda i: -float(scores[i, c]))
        kept = []
        for j in cand:
            if all(float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) <= thr for i in kept):
                kept.append(j)
        dets += [(float(scores[j, c]), j, c) for j in kept]
    dets.sort(key=lambda d: -d[0])
    return dets[:max_det]


def as_set(keep, labels, scores):
    return {(int(k), int(c)) for k, c in zip(keep, labels)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_nms_matches_definition(seed):
    boxes = random_boxes(60, seed)
    scores = torch.rand((60, 5), generator=torch.Generator().manual_seed(seed + 10))
    keep, labels, sc = fast_nms(boxes, scores, iou_threshold=0.5, top_k=20, max_det=40)
    ref = slow_fast_nms(boxes, scores, 0.5, 20, 40)
    assert as_set(keep, labels, sc) == {(j, c) for _, j, c in ref}
    assert torch.all(sc[:-1] >= sc[1:])
    torch.testing.assert_close(sc, torch.tensor([s for s, _, _ in ref]))
    torch.testing.assert_close(sc, scores[keep, labels])


def test_fast_nms_differs_from_greedy_as_published():
    # A > B > C in score; IoU(A,B) > thr, IoU(B,C) > thr, IoU(A,C) small. Greedy keeps A and C; Fast NMS lets the
    # suppressed B still suppress C, so it keeps only A.
    boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    assert float(pairwise_iou(boxes[:1], boxes[1:2])) > 0.4 and float(pairwise_iou(boxes[:1], boxes[2:])) < 0.4
    keep, _, _ = fast_nms(boxes, scores, iou_threshold=0.4)
    assert keep.tolist() == [0]
    keep, _, _ = standard_nms(boxes, scores, iou_threshold=0.4, score_threshold=0.0)
    assert keep.tolist() == [0, 2]


def test_fast_nms_threshold_is_inclusive_and_top_k_and_max_det():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20 / 3 * 1.5]])  # IoU exactly 1/1 * ... computed below
    iou = float(pairwise_iou(boxes[:1], boxes[1:]))
    scores = torch.tensor([[0.9], [0.8]])
    assert fast_nms(boxes, scores, iou_threshold=iou)[0].tolist() == [0, 1]  # keep if max IoU <= threshold
    assert fast_nms(boxes, scores, iou_threshold=iou - 1e-4)[0].tolist() == [0]
    many = random_boxes(50, 3, clustered=False)
    s = torch.rand((50, 3), generator=torch.Generator().manual_seed(4))
    keep, labels, _ = fast_nms(many, s, iou_threshold=1.0, top_k=7, max_det=None)
    assert len(keep) == 21 and torch.bincount(labels).tolist() == [7, 7, 7]
    assert len(fast_nms(many, s, iou_threshold=1.0, top_k=7, max_det=10)[0]) == 10
    keep, _, sc = fast_nms(many, s, iou_threshold=1.0, top_k=7, max_det=None, score_threshold=0.5)
    assert bool((sc > 0.5).all())


def test_cc_fast_nms_matches_definition():
    boxes = random_boxes(40, 7)
    scores = torch.rand((40, 4), generator=torch.Generator().manual_seed(8))
    best, cls = scores.max(1)
    order = best.argsort(descending=True)[:25].tolist()
    ref = [j for r, j in enumerate(order)
           if all(float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) <= 0.5 for i in order[:r])]
    keep, labels, sc = cc_fast_nms(boxes, scores, 0.5, top_k=25)
    assert keep.tolist() == ref
    assert labels.tolist() == cls[ref].tolist()
    torch.testing.assert_close(sc, best[ref])


@pytest.mark.parametrize("seed", [0, 5])
def test_standard_nms_matches_greedy_reference(seed):
    boxes = random_boxes(50, seed)
    scores = torch.rand((50, 3), generator=torch.Generator().manual_seed(seed + 1))
    keep, labels, sc = standard_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.3, max_det=100)
    ref = slow_greedy_nms(boxes, scores, 0.5, 0.3, 100)
    assert as_set(keep, labels, sc) == {(j, c) for _, j, c in ref}
    torch.testing.assert_close(sc, torch.tensor([s for s, _, _ in ref]))
    # per-class top_k cap before NMS
    keep, labels, _ = standard_nms(boxes, scores, iou_threshold=1.0, score_threshold=0.0, max_det=None, top_k=4)
    assert torch.bincount(labels).tolist() == [4, 4, 4]


def test_empty_inputs_and_bad_shapes():
    for fn in (fast_nms, cc_fast_nms, standard_nms):
        keep, labels, scores = fn(torch.zeros((0, 4)), torch.zeros((0, 80)))
        assert keep.numel() == labels.numel() == scores.numel() == 0
    with pytest.raises(ValueError, match="scores must be"):
        fast_nms(torch.zeros((3, 4)), torch.zeros((2, 80)))
    with pytest.raises(ValueError, match="boxes must be"):
        fast_nms(torch.zeros((3, 5)), torch.zeros((3, 80)))


def test_pairwise_iou_matches_torchvision_and_batches():
    a, b = random_boxes(9, 1), random_boxes(6, 2)
    torch.testing.assert_close(pairwise_iou(a, b), box_iou(a, b))
    batched = pairwise_iou(torch.stack([a, a]), torch.stack([a, a]))
    torch.testing.assert_close(batched[1], box_iou(a, a))
