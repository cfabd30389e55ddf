"""Refinement points from the student-teacher disagreement on hand-built masks: FN -> positive, FP -> negative,
uniform over FN | FP, ignored when the disagreement is small, the teacher's best mask, the padding, the x4 scale."""

from __future__ import annotations

import pytest
import torch

from edgesam.point_sampler import append_points, disagreement_points, select_masks


def _logits(*rects, shape=(16, 16)) -> torch.Tensor:
    """(P, 1, h, w) logits +5 inside (x0, y0, x1, y1) rectangles (exclusive ends), -5 elsewhere."""
    out = torch.full((len(rects), 1, *shape), -5.0)
    for m, (x0, y0, x1, y1) in zip(out, rects):
        m[0, y0:y1, x0:x1] = 5.0
    return out


def test_false_negative_gives_a_positive_point_in_the_missed_region():
    teacher = _logits((2, 2, 10, 10))
    student = _logits((2, 2, 10, 6))  # misses rows 6..9 of the teacher's square: 32 FN pixels, no FP
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        pts, labels = disagreement_points(student, teacher, None, None, (64, 64), generator=g)
        assert labels.tolist() == [[1]]
        x, y = (pts[0, 0] / 4).tolist()  # 16 -> 64: grid index x 4
        assert x == int(x) and y == int(y) and 2 <= x < 10 and 6 <= y < 10


def test_false_positive_gives_a_negative_point_outside_the_teacher_mask():
    teacher = _logits((2, 2, 6, 6))
    student = _logits((2, 2, 12, 6))  # 32 extra pixels in columns 6..11
    g = torch.Generator().manual_seed(1)
    pts, labels = disagreement_points(student, teacher, None, None, (32, 48), generator=g)
    assert labels.tolist() == [[0]]
    x, y = pts[0, 0].tolist()
    assert x / 3 == int(x / 3) and 6 <= x / 3 < 12 and 2 <= y / 2 < 6  # per-axis scale 48/16, 32/16


def test_draw_is_uniform_over_the_union():
    # 48 FN pixels and 16 FP pixels: P(positive) = 0.75
    teacher = _logits((0, 0, 8, 8))
    student = _logits((0, 0, 8, 2))
    student[0, 0, 8:10, 0:8] = 5.0
    g = torch.Generator().manual_seed(2)
    labels = torch.cat([disagreement_points(student, teacher, None, None, (16, 16), num_points=5, generator=g)[1]
                        for _ in range(400)])
    assert set(labels.unique().tolist()) == {0, 1}
    assert (labels == 1).float().mean().item() == pytest.approx(0.75, abs=0.03)  # 2000 draws: sd 0.01


def test_small_disagreement_is_ignored():
    teacher = _logits((2, 2, 10, 10))
    student = _logits((2, 2, 10, 10))
    student[0, 0, 2, 2:11] = torch.tensor([-5.0] * 8 + [5.0])  # 8 FN + 1 FP = 9 < 10
    pts, labels = disagreement_points(student, teacher, None, None, (64, 64))
    assert labels.tolist() == [[-2]] and pts.abs().sum() == 0
    # ten pixels are enough for one point, not for two
    student[0, 0, 3, 2] = -5.0
    assert disagreement_points(student, teacher, None, None, (64, 64))[1].tolist() != [[-2]]
    assert disagreement_points(student, teacher, None, None, (64, 64), num_points=2)[1].tolist() == [[-2, -2]]


def test_padding_is_excluded():
    teacher = _logits((0, 0, 8, 16))
    student = _logits((0, 0, 16, 16))  # disagrees only in columns 8..15
    valid = torch.zeros(1, 1, 64, 64)
    valid[..., :, :32] = 1  # the image is the left half of the padded input
    pts, labels = disagreement_points(student, teacher, None, valid, (64, 64))
    assert labels.tolist() == [[-2]]
    valid[..., :, :48] = 1  # now columns 8..11 of the grid are inside
    g = torch.Generator().manual_seed(3)
    pts, labels = disagreement_points(student, teacher, None, valid, (64, 64), generator=g)
    assert labels.tolist() == [[0]] and 32 <= pts[0, 0, 0].item() < 48


def test_multimask_uses_the_teachers_best_mask_for_both():
    teacher = torch.cat([_logits((0, 0, 4, 4)), _logits((0, 0, 12, 12))], 1)  # (1, 2, 16, 16)
    student = torch.cat([_logits((0, 0, 16, 16)), _logits((0, 0, 12, 8))], 1)
    # teacher rates mask 1 best: student mask 1 misses rows 8..11 -> positive; mask 0 would give a negative
    pts, labels = disagreement_points(student, teacher, torch.tensor([[0.2, 0.9]]), None, (16, 16),
                                      generator=torch.Generator().manual_seed(4))
    assert labels.tolist() == [[1]] and 8 <= pts[0, 0, 1].item() < 12
    _, labels = disagreement_points(student, teacher, torch.tensor([[0.9, 0.2]]), None, (16, 16))
    assert labels.tolist() == [[0]]
    with pytest.raises(ValueError, match="IoU"):
        disagreement_points(student, teacher, None, None, (16, 16))


def test_select_and_append():
    logits = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)
    assert select_masks(logits, torch.tensor([[0, 1, 0], [3, 2, 1]])).flatten().tolist() == [1.0, 3.0]
    prev = (torch.zeros(2, 1, 2), torch.ones(2, 1))
    new = (torch.ones(2, 1, 2), torch.zeros(2, 1, dtype=torch.int64))
    pts, labels = append_points(prev, new)
    assert pts.shape == (2, 2, 2) and labels.tolist() == [[1, 0], [1, 0]] and labels.dtype == torch.int64
    assert append_points(None, new) is new
    with pytest.raises(ValueError, match="differ"):
        disagreement_points(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), None, None, (16, 16))
