"""EdgeSAM's distillation losses against hand-computed values (reduction, validity weights, +1 Dice smoothing)."""

from __future__ import annotations

import math

import pytest
import torch

from edgesam.losses import PromptLoss, binarise, embedding_mse, mask_bce, mask_dice, valid_grid

LN3 = math.log(3.0)


def _t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_bce_one_prompt_by_hand():
    # sigmoid(0) = 0.5 against 1, sigmoid(ln 3) = 0.75 against 0: -ln 0.5 and -ln 0.25
    logits, target = _t([0.0, LN3]).view(1, 1, 1, 2), _t([1.0, 0.0]).view(1, 1, 1, 2)
    assert mask_bce(logits, target).item() == pytest.approx((math.log(2) + math.log(4)) / 2, abs=1e-6)
    weight = _t([1.0, 0.5]).view(1, 1, 1, 2)
    assert mask_bce(logits, target, weight).item() == pytest.approx(
        (math.log(2) + 0.5 * math.log(4)) / 1.5, abs=1e-6)


def test_bce_reduction_is_per_prompt_then_mean():
    # prompt 0: both pixels valid; prompt 1: only its first pixel. Per-prompt means, then their mean (not a global
    # weighted mean): (mean(ln2, ln4) + ln2) / 2
    logits = _t([0.0, LN3], [0.0, LN3]).view(2, 1, 1, 2)
    target = _t([1.0, 0.0], [1.0, 0.0]).view(2, 1, 1, 2)
    weight = _t([1.0, 1.0], [1.0, 0.0]).view(2, 1, 1, 2)
    want = ((math.log(2) + math.log(4)) / 2 + math.log(2)) / 2
    assert mask_bce(logits, target, weight).item() == pytest.approx(want, abs=1e-6)
    # a (P, 1, h, w) weight is shared by K masks: the K masks of a prompt pool into one mean
    logits_k = torch.cat([logits, torch.zeros_like(logits)], 1)  # second mask: sigmoid 0.5 everywhere
    target_k = torch.cat([target, target], 1)
    want_k = ((math.log(2) + math.log(4) + 2 * math.log(2)) / 4 + (math.log(2) + math.log(2)) / 2) / 2
    assert mask_bce(logits_k, target_k, weight).item() == pytest.approx(want_k, abs=1e-6)


def test_bce_equals_the_official_sigmoid_then_bce_for_moderate_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 8, 8, generator=g) * 3
    target = (torch.rand(3, 4, 8, 8, generator=g) > 0.5).float()
    weight = torch.rand(3, 1, 8, 8, generator=g)
    ref = torch.nn.functional.binary_cross_entropy(logits.double().sigmoid(), target.double(), reduction="none")
    ref = ((ref * weight).flatten(1).sum(-1) / weight.expand_as(ref).flatten(1).sum(-1)).mean()
    assert mask_bce(logits, target, weight).item() == pytest.approx(ref.item(), rel=1e-5)


def test_dice_by_hand():
    logits, target = _t([0.0, LN3]).view(1, 1, 1, 2), _t([1.0, 0.0]).view(1, 1, 1, 2)
    # p = (0.5, 0.75), t = (1, 0): 1 - (2 * 0.5 + 1) / (1.25 + 1 + 1)
    assert mask_dice(logits, target).item() == pytest.approx(1 - 2 / 3.25, abs=1e-6)
    # weights scale both p and t: p = (0.5, 0.375), t = (1, 0)
    weight = _t([1.0, 0.5]).view(1, 1, 1, 2)
    assert mask_dice(logits, target, weight).item() == pytest.approx(1 - 2 / (0.875 + 1 + 1), abs=1e-6)
    # per (prompt, mask), then the mean: a second mask that is exactly right up to the sigmoid
    big = torch.tensor([[[[40.0, -40.0]]]])
    both = mask_dice(torch.cat([logits, big], 1), torch.cat([target, target], 1))
    assert both.item() == pytest.approx(((1 - 2 / 3.25) + (1 - 3 / 3)) / 2, abs=1e-6)
    # an empty target and an empty prediction: no loss (the +1 smoothing)
    assert mask_dice(torch.full((1, 1, 2, 2), -40.0), torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0, abs=1e-9)


def test_embedding_mse_by_hand_excludes_padding():
    s = torch.zeros(2, 2, 2, 2)
    t = torch.zeros(2, 2, 2, 2)
    t[0, 0] = 1.0          # image 0: error 1 on channel 0 everywhere -> channel mean 0.5 at every pixel
    t[1, :, :, 0] = 2.0    # image 1: error 4 on both channels in column 0 (inside the image)
    t[1, :, :, 1] = 10.0   # ... and 100 in column 1, which is padding
    valid = torch.ones(2, 1, 8, 8)
    valid[1, :, :, 4:] = 0  # image 1 is 8 x 4 inside an 8 x 8 input
    assert embedding_mse(s, t, valid).item() == pytest.approx((0.5 + 4.0) / 2, abs=1e-6)
    # without a validity map: plain mean over everything
    assert embedding_mse(s, t).item() == pytest.approx(((0.5 * 4) + (4 * 2 + 100 * 2)) / 8, abs=1e-6)
    with pytest.raises(ValueError, match="no valid embedding pixel"):
        embedding_mse(s, t, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="same"):
        embedding_mse(s, t[:, :1])


def test_embedding_mse_equals_the_official_formula_when_valid_areas_agree():
    # official: mse.flatten(2) * valid; mean over channels; sum / (B, 1) count -> (B, B); mean. Equal areas: same.
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 4, 4, 4, generator=g)
    valid = torch.zeros(3, 1, 16, 16)
    valid[:, :, :12, :] = 1
    keep = (valid_grid(valid, (4, 4)) > 0.5).flatten(2)
    err = (s - t).pow(2).flatten(2) * keep
    official = (err.mean(1).sum(-1) / keep.sum(-1)).mean()
    assert embedding_mse(s, t, valid).item() == pytest.approx(official.item(), rel=1e-6)


def test_valid_grid_is_bilinear():
    valid = torch.zeros(1, 1, 4, 4)
    valid[..., :, :2] = 1
    got = valid_grid(valid, (1, 2))
    assert got.flatten().tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError):
        valid_grid(torch.ones(4, 4), (2, 2))


def test_prompt_loss_weights_and_iterations():
    logits, target = _t([0.0, LN3]).view(1, 1, 1, 2), _t([1.0, 0.0]).view(1, 1, 1, 2)
    out = PromptLoss(5.0, 5.0)(logits, target, None, iteration=1, num_iters=2)
    assert set(out) == {"loss_bce_1", "loss_dice_1"}
    assert out["loss_bce_1"].item() == pytest.approx(2.5 * (math.log(2) + math.log(4)) / 2, abs=1e-5)
    assert out["loss_dice_1"].item() == pytest.approx(2.5 * (1 - 2 / 3.25), abs=1e-5)
    assert set(PromptLoss(1.0, 0.0)(logits, target, None, 0, 1)) == {"loss_bce_0"}
    with pytest.raises(ValueError):
        PromptLoss(0.0, 0.0)
    assert binarise(torch.tensor([-1.0, 0.0, 0.5])).tolist() == [0.0, 0.0, 1.0]


def test_shape_errors():
    with pytest.raises(ValueError, match="same"):
        mask_bce(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="weight"):
        mask_dice(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.ones(1, 1, 2, 2))
