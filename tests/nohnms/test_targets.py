"""Target assignment on hand-built crowds: labels with ignore regions by IoA, and the hallucinator's
second-highest-IoU neighbour, checked against hand-computed values and a slow obvious version."""

from __future__ import annotations

import pytest
import torch

from forge.ops import box_iou
from nohnms.targets import label_anchors_with_ignore, label_proposals, nearest_neighbour_targets


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# three people: A and B side by side (B shifted by a quarter of the width), C alone
A = [0.0, 0.0, 40.0, 100.0]
B = [10.0, 0.0, 50.0, 100.0]
C = [200.0, 0.0, 240.0, 100.0]
GT = torch.tensor([A, B, C])


def test_neighbour_of_a_person_is_the_other_person_of_its_pair():
    props = torch.tensor([A, B, C, [5.0, 0.0, 45.0, 100.0]])
    iou = box_iou(GT, props)
    o_iou, o_box = nearest_neighbour_targets(iou, GT)
    ab = 30 * 100 / (2 * 4000 - 30 * 100)  # 0.6
    assert _iou(A, B) == pytest.approx(ab)
    assert o_iou[0] == pytest.approx(ab) and torch.equal(o_box[0], GT[1])  # A's neighbour is B
    assert o_iou[1] == pytest.approx(ab) and torch.equal(o_box[1], GT[0])  # and B's is A
    assert o_iou[2] == 0  # C has no neighbour: its second-highest IoU is 0 (below the 0.4 regression threshold)
    # the box between A and B: IoU 35/45 with both; the second-highest is the other one
    mid = 35 * 100 / (8000 - 3500)
    assert o_iou[3] == pytest.approx(mid) and _iou([5, 0, 45, 100], A) == pytest.approx(mid)


def test_neighbour_matches_a_slow_obvious_version_on_random_crowds():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        m, n = int(torch.randint(2, 8, (1,), generator=g)), 30
        xy = torch.rand(m, 2, generator=g) * 60
        gt = torch.cat([xy, xy + 20 + torch.rand(m, 2, generator=g) * 40], 1)
        pxy = torch.rand(n, 2, generator=g) * 60
        props = torch.cat([pxy, pxy + 20 + torch.rand(n, 2, generator=g) * 40], 1)
        o_iou, o_box = nearest_neighbour_targets(box_iou(gt, props), gt)
        for j in range(n):
            ious = sorted(((_iou(gt[i].tolist(), props[j].tolist()), i) for i in range(m)), reverse=True)
            assert o_iou[j].item() == pytest.approx(ious[1][0], abs=1e-6)
            assert torch.allclose(o_box[j], gt[ious[1][1]]) or ious[1][0] == pytest.approx(ious[2][0] if m > 2 else -1)


def test_neighbour_with_fewer_than_two_people():
    props = torch.tensor([A, C])
    o_iou, o_box = nearest_neighbour_targets(box_iou(GT[:1], props), GT[:1])
    assert torch.equal(o_iou, torch.zeros(2)) and torch.equal(o_box, GT[:1].expand(2, 4))
    o_iou, o_box = nearest_neighbour_targets(box_iou(GT[:0], props), GT[:0])
    assert o_iou.shape == (2,) and o_box.shape == (2, 4) and not o_iou.any()


def test_proposal_labels_with_ignore_regions_by_ioa():
    ignore = torch.tensor([[100.0, 0.0, 180.0, 100.0]])
    props = torch.tensor([
        A,                              # IoU 1 with A: positive
        [105.0, 10.0, 135.0, 90.0],     # inside the ignore region, IoU 0: neither
        [160.0, 0.0, 200.0, 100.0],     # half in the ignore region (IoA 0.5 >= 0.5 > IoU 1/3 with P): neither
        [170.0, 0.0, 210.0, 100.0],     # a quarter in it (IoA 0.25): negative
        [25.0, 0.0, 65.0, 100.0],       # IoU 0.45 with B: negative
        [142.0, 0.0, 182.0, 100.0],     # inside the ignore region but on person P (IoU 0.9): positive
    ])
    gt = torch.cat([GT, torch.tensor([[140.0, 0.0, 180.0, 100.0]])])  # P stands inside the ignore region
    matched, labels, iou = label_proposals(props, gt, ignore)
    assert labels.tolist() == [1, -1, -1, 0, 0, 1]
    assert matched[0] == 0 and matched[5] == 3
    assert iou.shape == (4, 6)
    # without the IoA rule the ignored proposals are plain negatives
    assert label_proposals(props, gt, ignore, ignore_ioa=None)[1].tolist() == [1, 0, 0, 0, 0, 1]


def test_proposal_labels_without_people():
    props = torch.tensor([A, [110.0, 10.0, 150.0, 90.0]])
    matched, labels, iou = label_proposals(props, torch.zeros(0, 4), torch.tensor([[100.0, 0.0, 180.0, 100.0]]))
    assert labels.tolist() == [0, -1] and matched.tolist() == [0, 0] and iou.shape == (0, 2)


def test_anchor_labels_leave_out_ignored_non_positives():
    anchors = torch.tensor([[110.0, 10.0, 150.0, 90.0], [0.0, 0.0, 40.0, 100.0], [120.0, 0.0, 160.0, 40.0],
                            [175.0, 0.0, 215.0, 100.0]])
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    out = label_anchors_with_ignore(labels, anchors, torch.tensor([[100.0, 0.0, 180.0, 100.0]]), 0.5)
    assert out.tolist() == [-1.0, 1.0, 1.0, 0.0]  # positives stay positive; IoA 0.125 stays negative
    assert label_anchors_with_ignore(labels, anchors, torch.zeros(0, 4), 0.5) is labels
