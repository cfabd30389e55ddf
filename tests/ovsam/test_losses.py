"""CLIP2SAM losses and training prompts against slow obvious versions / hand values."""

from __future__ import annotations

import math

import pytest
import torch

from ovsam.losses import (
    classification_loss,
    mask_losses,
    mixed_batch_counts,
    point_sample,
    training_prompts,
    uncertain_points,
)


def test_classification_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    labels = torch.tensor([0, 2, -1])  # class 0, background, ignored
    lp = logits.log_softmax(-1)
    # weights: class 1, background 0.1; the ignored row adds its clamped label's weight (1) to the normaliser
    want = 2.0 * (-lp[0, 0] - 0.1 * lp[1, 2]) / (1 + 0.1 + 1)
    torch.testing.assert_close(classification_loss(logits, labels), want)


def test_mask_losses_by_hand():
    logits = torch.zeros(1, 1, 4, 4)
    logits[..., :2] = 10.0  # left half positive
    gt = torch.zeros(1, 1, 8, 8)
    gt[..., :4] = 1
    coords = torch.tensor([[[0.125, 0.5], [0.875, 0.5]]])  # one point in each half
    out = mask_losses(logits, gt, coords)
    # left point: logit 10, target 1; right point: logit 0, target 0
    bce = (math.log1p(math.exp(-10.0)) + math.log(2.0)) / 2
    torch.testing.assert_close(out["loss_mask"], torch.tensor(5 * bce))
    s = 1 / (1 + math.exp(-10.0))
    dice = 1 - (2 * s + 1) / ((s + 0.5) + 1 + 1)
    torch.testing.assert_close(out["loss_dice"], torch.tensor(5 * dice))


def test_point_sample_and_uncertainty():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    # pixel centres of a 2x2 map sit at 0.25 / 0.75
    torch.testing.assert_close(point_sample(x, torch.tensor([[[0.25, 0.25], [0.75, 0.75]]])),
                               torch.tensor([[[0.0, 3.0]]]))
    logits = torch.full((2, 1, 32, 32), 8.0)
    logits[:, :, :, 8:24] = 0.0  # uncertain band: the middle half
    g = torch.Generator().manual_seed(0)
    pts = uncertain_points(logits, num_points=400, generator=g)
    assert pts.shape == (2, 400, 2)
    band = ((pts[..., 0] > 7.5 / 32) & (pts[..., 0] < 24.5 / 32)).float()
    assert band[:, :300].mean() == 1.0  # the 75 % importance part: all in the band
    assert 0.3 < band[:, 300:].mean() < 0.75  # the uniform 25 %: about the band's share


def test_training_prompts():
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    masks[1, 5:9, 5:9] = True
    masks[2, 0, 9] = True
    p = training_prompts(masks, 40, torch.Generator().manual_seed(0))
    assert len(p.index) == 40 and p.is_box.sum() == 21  # official: the first m // 2 + 1 are boxes
    assert sorted(torch.bincount(p.index).tolist()) == [13, 13, 14]
    for i, (x, y) in zip(p.index.tolist(), p.points[:, 0].long().tolist()):
        assert masks[i, y, x]
    few = training_prompts(masks, 2)
    assert sorted(few.index.tolist()) == [0, 1] and few.is_box.tolist() == [True, True]  # 2 // 2 + 1 = 2
    masks[1] = False
    with pytest.raises(ValueError, match=r"\[1\]"):
        training_prompts(masks)


def test_mixed_batch_counts():
    assert mixed_batch_counts(8, 0.25) == (6, 2)
    assert mixed_batch_counts(8, 0.0) == (8, 0) and mixed_batch_counts(8, 1.0) == (0, 8)
    with pytest.raises(ValueError, match="1.5"):
        mixed_batch_counts(8, 1.5)
