"""Anchors (counts, order, coordinates, square quirk), SSD box coding."""

from __future__ import annotations

import math

import pytest
import torch

from yolact.anchors import level_scales, make_anchors
from yolact.box_coding import cxcywh_to_xyxy, decode, encode, xyxy_to_cxcywh

GRIDS_550 = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]


def test_anchor_counts_per_level_at_550():
    yolact = make_anchors(GRIDS_550, level_scales((24, 48, 96, 192, 384)), square=True)
    plus = make_anchors(GRIDS_550, level_scales((24, 48, 96, 192, 384), 3))
    per_level = [h * w for h, w in GRIDS_550]
    assert per_level == [4761, 1225, 324, 81, 25]
    assert yolact.shape == (3 * sum(per_level), 4) == (19248, 4)
    assert plus.shape == (9 * sum(per_level), 4) == (57744, 4)


def test_square_anchor_quirk_coordinates():
    a = make_anchors(GRIDS_550, level_scales((24, 48, 96, 192, 384)), square=True)
    # first P3 cell, ratios (1, 1/2, 2): squares of side 24 * sqrt(r) px relative to 550
    for j, r in enumerate((1.0, 0.5, 2.0)):
        side = 24 * math.sqrt(r) / 550
        torch.testing.assert_close(a[j], torch.tensor([0.5 / 69, 0.5 / 69, side, side]))
    assert [round(float(a[j, 2]) * 550) for j in range(3)] == [24, 17, 34]
    # order: level, row, column, anchor -> anchor 3 is the next column, anchor 3*69 the next row
    torch.testing.assert_close(a[3, :2], torch.tensor([1.5 / 69, 0.5 / 69]))
    torch.testing.assert_close(a[3 * 69, :2], torch.tensor([0.5 / 69, 1.5 / 69]))
    # first P4 anchor and last P7 anchor
    p4 = 3 * 4761
    torch.testing.assert_close(a[p4], torch.tensor([0.5 / 35, 0.5 / 35, 48 / 550, 48 / 550]))
    side = 384 * math.sqrt(2) / 550
    torch.testing.assert_close(a[-1], torch.tensor([4.5 / 5, 4.5 / 5, side, side]))


def test_plus_anchors_are_rectangles_with_three_scales():
    a = make_anchors(GRIDS_550, level_scales((24, 48, 96, 192, 384), 3))
    first = a[:9]
    expected = []
    for s in (24, 24 * 2 ** (1 / 3), 24 * 2 ** (2 / 3)):  # scale outer, ratio inner
        for r in (1.0, 0.5, 2.0):
            expected.append([0.5 / 69, 0.5 / 69, s * math.sqrt(r) / 550, s / math.sqrt(r) / 550])
    torch.testing.assert_close(first, torch.tensor(expected))
    assert torch.allclose(first[:, 2] * first[:, 3], torch.tensor([s * s for s in (24, 30.2381, 38.0976)
                                                                   for _ in range(3)]) / 550**2, rtol=1e-4)


def test_anchor_sizes_are_relative_to_max_size_not_input():
    small = make_anchors([(4, 5)], [[24]], (1.0,), max_size=550)
    assert float(small[0, 2]) == pytest.approx(24 / 550)
    assert float(small[0, 0]) == pytest.approx(0.5 / 5) and float(small[0, 1]) == pytest.approx(0.5 / 4)
    with pytest.raises(ValueError, match="levels"):
        make_anchors([(4, 5)], [[24], [48]])


def test_encode_known_values_and_round_trip():
    anchors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    gt = torch.tensor([[0.42, 0.3, 0.62, 0.7]])  # centre (0.52, 0.5), size (0.2, 0.4)
    t = encode(gt, anchors)
    torch.testing.assert_close(t, torch.tensor([[0.02 / (0.1 * 0.2), 0.0, 0.0, 0.0]]))
    g = torch.Generator().manual_seed(0)
    anchors = torch.cat([torch.rand((200, 2), generator=g), torch.rand((200, 2), generator=g) * 0.5 + 0.01], 1)
    deltas = torch.randn((200, 4), generator=g)
    boxes = decode(deltas, anchors)
    torch.testing.assert_close(encode(boxes, anchors), deltas, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(decode(encode(boxes, anchors), anchors), boxes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decode(torch.zeros(200, 4), anchors), cxcywh_to_xyxy(anchors))
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(anchors)), anchors)
    # batched decode
    assert decode(deltas[None].expand(3, -1, -1), anchors).shape == (3, 200, 4)
