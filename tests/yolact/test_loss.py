"""Loss terms on hand-computed cases, and the whole loss against the official MultiBoxLoss (fixtures)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forge.data.structures import Instances
from tests.yolact.official_fixtures import FIXTURES, seeded_state_dict
from yolact.anchors import level_scales, make_anchors
from yolact.assembly import crop_masks
from yolact.box_coding import xyxy_to_cxcywh
from yolact.convert import convert_state_dict
from yolact.loss import YolactLoss, mask_loss_single, ohem_conf_loss, semantic_loss_single
from yolact.maskiou import MaskIoUNet


def test_ohem_keeps_positives_and_three_hardest_negatives():
    logits = torch.tensor([[
        [0.0, 1.0, 2.0],   # positive, class 2
        [3.0, 0.0, 0.0],   # easy negative
        [0.0, 2.0, 0.0],   # hard negative
        [0.0, 0.0, 0.0],   # medium
        [1.0, 0.5, 0.0],   # medium-easy
        [0.0, 5.0, 0.0],   # hardest but neutral -> ignored
        [2.0, 0.0, 0.0],   # easy
    ]])
    conf_t = torch.tensor([[2, 0, 0, 0, 0, -1, 0]])
    loss = ohem_conf_loss(logits, conf_t, negpos_ratio=3)

    def ce(row, target):
        return math.log(sum(math.exp(v) for v in row)) - row[target]

    rows = logits[0].tolist()
    # -log p(bg): anchor 2 (2.13) > 3 (1.10) > 4 (0.87) > 6 (0.24) > 1 (0.10); three hardest = 2, 3, 4
    expected = ce(rows[0], 2) + ce(rows[2], 0) + ce(rows[3], 0) + ce(rows[4], 0)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # no positive -> no negatives either
    assert float(ohem_conf_loss(logits, torch.zeros_like(conf_t))) == 0.0


def test_mask_loss_by_hand():
    # one prototype on a 4x4 grid, coefficient 1: predicted mask sigmoid(P)
    protos = torch.zeros((1, 4, 4))
    protos[0, 1, 1] = 2.0
    coefs = torch.ones((1, 1))
    gt = torch.zeros((1, 4, 4))
    gt[0, 1:3, 1:3] = 1.0
    box = torch.tensor([[0.25, 0.25, 0.75, 0.75]])  # cells 1..2; with 1-cell padding the crop is 0..3 (all)
    per_mask, pred = mask_loss_single(protos, coefs, gt, box)
    p = torch.sigmoid(protos[0])
    bce = -(gt[0] * torch.log(p) + (1 - gt[0]) * torch.log(1 - p))
    # GT box area in prototype cells: (0.5 * 4) * (0.5 * 4) = 4
    assert float(per_mask[0]) == pytest.approx(float(bce.sum()) / 4, rel=1e-6)
    # a box touching the left edge: cells with x >= x2 + 1 are cropped to 0 and contribute BCE(0, 0) = 0
    box = torch.tensor([[0.0, 0.0, 0.25, 0.25]])
    cropped = crop_masks(torch.sigmoid(protos), box)
    assert cropped[0, :2, :2].eq(torch.sigmoid(protos[0, :2, :2])).all() and cropped[0, 2:, :].eq(0).all()
    per_mask, _ = mask_loss_single(protos, coefs, torch.zeros((1, 4, 4)), box)
    p = torch.sigmoid(protos[0, :2, :2])
    assert float(per_mask[0]) == pytest.approx(float(-torch.log(1 - p).sum()) / 1.0, rel=1e-6)


def test_semantic_loss_by_hand():
    logits = torch.zeros((2, 2, 2))
    assert float(semantic_loss_single(logits, torch.zeros((0, 8, 8)), torch.zeros(0, dtype=torch.long))) == \
        pytest.approx(2 * math.log(2))
    logits = torch.tensor([[[3.0, -3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.zeros((1, 8, 8))
    masks[0, :4, :4] = 1  # top-left quarter -> cell (0, 0) of class 0
    loss = semantic_loss_single(logits, masks, torch.tensor([0]))
    expected = (F.softplus(torch.tensor(-3.0)) + F.softplus(torch.tensor(-3.0)) + 6 * math.log(2)) / 4
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_box_loss_and_normalisation_by_positives():
    # one GT exactly on anchor 0; deltas of anchor 0 are off by (0.5, 2, 0, 0): smooth-L1 = 0.125 + 1.5
    anchors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]))
    out = {
        "boxes": torch.tensor([[[0.5, 2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]]),
        "cls_logits": torch.zeros((1, 2, 3)),
        "coefs": torch.zeros((1, 2, 1)),
        "prototypes": torch.zeros((1, 1, 4, 4)),
        "anchors": anchors,
    }
    masks = torch.zeros((1, 16, 16), dtype=torch.bool)
    masks[0, :8, :8] = True
    gt = Instances(boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]), labels=torch.tensor([1]), masks=masks)
    losses = YolactLoss()(out, [gt], (16, 16))
    assert float(losses["loss_box"]) == pytest.approx(1.5 * (0.125 + 1.5))
    # CE: positive (class 2 of 3, uniform logits) + one negative (max 3 per positive, only one available)
    assert float(losses["loss_cls"]) == pytest.approx(2 * math.log(3))
    # two identical images: same per-positive losses
    out2 = {k: (torch.cat([v, v]) if k != "anchors" else v) for k, v in out.items()}
    losses2 = YolactLoss()(out2, [gt, gt], (16, 16))
    for k in ("loss_box", "loss_cls", "loss_mask"):
        assert float(losses2[k]) == pytest.approx(float(losses[k]), rel=1e-6)


def test_only_crowd_image_gives_finite_zero_losses():
    out = {"boxes": torch.zeros((1, 3, 4), requires_grad=True),
           "cls_logits": torch.zeros((1, 3, 3), requires_grad=True),
           "coefs": torch.zeros((1, 3, 1)), "prototypes": torch.zeros((1, 1, 4, 4)),
           "anchors": xyxy_to_cxcywh(torch.tensor([[0.0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 1, 1]]))}
    gt = Instances(boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]), labels=torch.tensor([0]),
                   masks=torch.ones((1, 16, 16), dtype=torch.bool), iscrowd=torch.tensor([True]))
    losses = YolactLoss()(out, [gt], (16, 16))
    assert set(losses) == {"loss_cls", "loss_box", "loss_mask"}
    assert all(float(v.detach()) == 0.0 for v in losses.values())
    sum(losses.values()).backward()


@pytest.mark.parametrize("case", ["yolact", "yolact_plus"])
def test_whole_loss_matches_official_multibox_loss(case):
    """Official MultiBoxLoss on seeded synthetic predictions (see tests/fixtures/yolact/README.md)."""
    spec = json.loads((FIXTURES / "loss_cases.json").read_text())[case]
    data = np.load(FIXTURES / f"loss_{case}.npz")
    h, w = spec["input_size"]
    plus = case == "yolact_plus"
    shapes = [(math.ceil(h / s), math.ceil(w / s)) for s in (8, 16, 32, 64, 128)]
    anchors = make_anchors(shapes, level_scales((24, 48, 96, 192, 384), 3 if plus else 1), square=not plus)
    assert anchors.shape[0] == int(data["num_priors"])
    np.testing.assert_allclose(anchors.double().sum(0).numpy(), data["priors_sum"], rtol=1e-6)
    g = torch.Generator().manual_seed(spec["seed"])
    n = anchors.shape[0]
    loc = torch.randn((2, n, 4), generator=g) * 0.5
    conf = torch.randn((2, n, 81), generator=g) * 2
    coef = torch.tanh(torch.randn((2, n, 32), generator=g))
    proto = torch.relu(torch.randn((2, *spec["proto_hw"], 32), generator=g))
    segm = torch.randn((2, 80, *spec["segm_hw"]), generator=g)
    targets = []
    for i, crowds in enumerate(spec["crowds"]):
        b = data[f"boxes{i}"]
        m = np.unpackbits(data[f"masks{i}"], axis=-1)[..., :w].astype(bool)
        iscrowd = torch.zeros(len(b), dtype=torch.bool)
        if crowds:
            iscrowd[-crowds:] = True
        targets.append(Instances(boxes=torch.from_numpy(b[:, :4]), labels=torch.from_numpy(b[:, 4]).long(),
                                 masks=torch.from_numpy(m), iscrowd=iscrowd))
    maskiou = None
    if plus:
        manifest = json.loads((FIXTURES / "yolact_plus_resnet50.manifest.json").read_text())["state_dict"]
        sub = {k: v for k, v in manifest.items() if k.startswith("maskiou_net.")}
        state = convert_state_dict(seeded_state_dict(sub, 0), darknet=False)
        maskiou = MaskIoUNet(80)
        maskiou.load_state_dict({k[len("maskiou_net."):]: v for k, v in state.items()})
    out = dict(boxes=loc, cls_logits=conf, coefs=coef, prototypes=proto.permute(0, 3, 1, 2), anchors=anchors,
               semantic=segm)
    losses = YolactLoss()(out, targets, (h, w), maskiou)
    names = {"B": "loss_box", "C": "loss_cls", "M": "loss_mask", "S": "loss_semantic", "I": "loss_maskiou"}
    assert set(names[k] for k in spec["losses"]) == set(losses)
    for k, ref in spec["losses"].items():
        assert float(losses[names[k]].detach()) == pytest.approx(ref, rel=1e-5, abs=1e-4), k


class _FixedIoU(torch.nn.Module):
    """A stand-in re-scoring net that predicts ``value`` for every class (one dummy parameter, as the loss needs)."""

    def __init__(self, value: float, num_classes: int) -> None:
        super().__init__()
        self.value, self.num_classes = value, num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return torch.full((masks.shape[0], self.num_classes), self.value) + self.dummy


def _one_gt_case(protos: torch.Tensor, n_pos: int = 1, coefs: torch.Tensor | None = None):
    """``n_pos`` anchors exactly on the GT box [0, 0, 8, 8] of a 16 x 16 input (all positive) plus one negative;
    the GT mask fills the box, i.e. cells 0..1 of the 4 x 4 prototype grid."""
    anchors = xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.5, 0.5]] * n_pos + [[0.5, 0.5, 1.0, 1.0]]))
    a = anchors.shape[0]
    out = {"boxes": torch.zeros((1, a, 4)), "cls_logits": torch.zeros((1, a, 3)),
           "coefs": torch.ones((1, a, 1)) if coefs is None else coefs[None], "prototypes": protos[None],
           "anchors": anchors}
    masks = torch.zeros((1, 16, 16), dtype=torch.bool)
    masks[0, :8, :8] = True
    return out, Instances(boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]), labels=torch.tensor([1]), masks=masks)


def test_maskiou_loss_by_hand():
    # prototype +10 on three of the GT's four cells, -10 elsewhere: the binarised mask covers 3 of 4 GT cells, so the
    # IoU target is 3/4; the net predicts 0.5 for the GT class: smooth-L1(0.5, 0.75) = 0.5 * 0.25^2, x25 / 1 positive
    protos = torch.full((1, 4, 4), -10.0)
    protos[0, 0, 0] = protos[0, 0, 1] = protos[0, 1, 0] = 10.0
    out, gt = _one_gt_case(protos)
    losses = YolactLoss(discard_mask_area=1)(out, [gt], (16, 16), maskiou_net=_FixedIoU(0.5, 2))
    assert float(losses["loss_maskiou"].detach()) == pytest.approx(25 * 0.5 * 0.25**2, rel=1e-5)
    # a GT of 4 cells is not above the default discard area (25 cells): no term, a zero that still has a gradient
    losses = YolactLoss()(out, [gt], (16, 16), maskiou_net=_FixedIoU(0.5, 2))
    assert float(losses["loss_maskiou"].detach()) == 0.0 and losses["loss_maskiou"].requires_grad


def test_masks_to_train_subsamples_and_rescales():
    protos = torch.zeros((1, 4, 4))
    protos[0, 0, 0] = 2.0
    # identical positives: any subset, rescaled by n_all / n_selected, gives the full sum
    out, gt = _one_gt_case(protos, n_pos=5)
    full = YolactLoss(masks_to_train=100)(out, [gt], (16, 16))["loss_mask"]
    for seed in range(3):
        torch.manual_seed(seed)
        sub = YolactLoss(masks_to_train=2)(out, [gt], (16, 16))["loss_mask"]
        assert float(sub) == pytest.approx(float(full), rel=1e-6)
    # different positives: the result is 5/2 x the sum of two of the five per-mask losses, times 6.125 / 5 positives
    coefs = torch.tensor([[-1.0], [-0.5], [0.0], [0.5], [1.0], [0.0]])
    out, gt = _one_gt_case(protos, n_pos=5, coefs=coefs)
    target = torch.zeros((5, 4, 4))
    target[:, :2, :2] = 1.0
    per_mask, _ = mask_loss_single(protos, coefs[:5], target, torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 5))
    pairs = {(i, j): float(per_mask[i] + per_mask[j]) * 2.5 * 6.125 / 5 for i in range(5) for j in range(i + 1, 5)}
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        got = float(YolactLoss(masks_to_train=2)(out, [gt], (16, 16))["loss_mask"])
        match = [p for p, v in pairs.items() if v == pytest.approx(got, rel=1e-6)]
        assert len(match) == 1, (got, pairs)
        seen.add(match[0])
    assert len(seen) > 1  # really random subsets
