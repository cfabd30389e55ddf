"""The detector: hallucinator losses (hand-computed), a few training iterations lowering them, images without
people or with only ignore regions, the NMS switch, the all-level RPN top-k and the ImageNet backbone file."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision

from forge.config import ConfigError
from forge.data.structures import DetSample, ImageMeta, Instances
from forge.evaluation.crowdhuman import CrowdHumanMetric
from forge.models import ImagePreprocessor
from forge.ops import standard_nms
from nohnms.backbone import build_resnet_fpn, load_imagenet
from nohnms.heads import hallucinator_losses
from nohnms.model import NohNmsRCNN, apply_nms

SIZE = (128, 160)


def tiny(init: bool = True, **kw) -> NohNmsRCNN:
    torch.manual_seed(0)
    args = dict(backbone="resnet18", backbone_checkpoint="scratch", backbone_norm="bn", trainable_layers=5,
                fpn_channels=32, anchor_sizes=(16, 32, 64, 128, 256), rpn_pre_nms_top_n_train=600,
                rpn_post_nms_top_n_train=200, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
                roi_batch_size_per_image=64, representation_size=64, max_det=50,
                data_preprocessor=ImagePreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]))
    args.update(kw)
    net = NohNmsRCNN(**args)
    if init:
        net.init_weights()
    return net


def sample(i: int, boxes, ignore=()) -> DetSample:
    b = torch.tensor([*boxes, *ignore], dtype=torch.float32).reshape(-1, 4)
    gt = Instances(boxes=b, labels=torch.zeros(len(b), dtype=torch.long),
                   iscrowd=torch.tensor([False] * len(boxes) + [True] * len(ignore), dtype=torch.bool))
    meta = ImageMeta(image_id=i, file_name=f"img{i}.png", ori_shape=SIZE, img_shape=SIZE, pad_shape=SIZE,
                     extra=dict(ID=f"img{i}"))
    return DetSample(meta=meta, gt=gt)


CROWD = [[20.0, 10.0, 60.0, 110.0], [32.0, 12.0, 72.0, 112.0], [100.0, 20.0, 130.0, 95.0]]


def test_hallucinator_losses_by_hand():
    prob = torch.tensor([0.5, 0.1, 0.9, 0.3])
    deltas = torch.tensor([[0.1, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [5.0, 5, 5, 5]])
    labels = torch.tensor([1, 1, 1, 0])  # the last is background: never in these losses
    o_iou = torch.tensor([0.6, 0.2, 0.45, 0.9])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0], [0.0, 0, 0, 0]])
    out = hallucinator_losses(prob, deltas, labels, o_iou, target, iou_threshold=0.4, prob_beta=0.02, reg_beta=1.0)
    # probability: |0.5-0.6| = 0.1, |0.1-0.2| = 0.1, |0.9-0.45| = 0.45 (all > beta: L1 - beta/2), / 3 foreground
    assert out["loss_overlap_prob"].item() == pytest.approx((0.09 + 0.09 + 0.44) / 3, rel=1e-5)
    # regression only where IoU > 0.4 (rows 0 and 2): 0.5*0.1^2 + 0.5*0.5^2 + (3 - 0.5), / 4 sampled RoIs
    assert out["loss_overlap_reg"].item() == pytest.approx((0.005 + 0.125 + 2.5) / 4, rel=1e-5)


def _step(net, opt, batch):
    data = net.data_preprocessor(batch, True)
    losses = net(**data, mode="loss")
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def _batch(samples):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (len(samples), 3, *SIZE), dtype=torch.uint8, generator=g)
    for s, img in zip(samples, x, strict=True):  # paint the people so there is something to learn
        for k, (x1, y1, x2, y2) in enumerate(s.gt.boxes[~s.gt.iscrowd].int().tolist()):
            img[:, y1:y2, x1:x2] = torch.tensor([40 * k, 200, 255 - 60 * k], dtype=torch.uint8)[:, None, None]
    return dict(inputs=x, data_samples=samples)


def _losses_at_seed(net, batch) -> dict:
    """The losses with the RoI sampler's draw fixed, so that before and after compare like with like."""
    torch.manual_seed(123)
    with torch.no_grad():
        return {k: float(v) for k, v in net(**net.data_preprocessor(batch, True), mode="loss").items()}


def test_a_few_iterations_lower_both_hallucinator_losses():
    """Train the second stage on fixed features and proposals (few enough that every one is sampled, so the losses
    compare like with like); one full end-to-end step is covered by the tests below."""
    net = tiny(roi_batch_size_per_image=64, roi_positive_fraction=0.5)
    net.train()
    batch = _batch([sample(0, CROWD), sample(1, CROWD[:2], ignore=[[90.0, 60.0, 150.0, 120.0]])])
    data = net.data_preprocessor(batch, True)
    targets = net.targets(data["data_samples"], data["inputs"].device)
    with torch.no_grad():
        feats = net.backbone(data["inputs"])
    g = torch.Generator().manual_seed(0)
    proposals = [t["boxes"].repeat(4, 1) + torch.randn(4 * len(t["boxes"]), 4, generator=g) * 4 for t in targets]
    proposals = [torch.cat([p, torch.tensor([[0.0, 0.0, 30.0, 30.0], [120.0, 90.0, 158.0, 126.0]])]) for p in proposals]
    opt = torch.optim.Adam(net.roi_heads.parameters(), lr=1e-3)
    history = []
    for _ in range(15):
        _, losses = net.roi_heads(feats, proposals, [SIZE, SIZE], targets)
        history.append({k: float(v.detach()) for k, v in losses.items()})
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    first, last = history[0], history[-1]
    assert set(first) == {"loss_classifier", "loss_box_reg", "loss_overlap_prob", "loss_overlap_reg"}
    assert first["loss_overlap_reg"] > 0  # the pair's IoU (0.54) is above 0.4: its neighbour is regressed
    assert last["loss_overlap_prob"] < 0.5 * first["loss_overlap_prob"]
    assert last["loss_overlap_reg"] < 0.8 * first["loss_overlap_reg"]


@pytest.mark.parametrize("case", ["no_box", "only_ignore"])
def test_images_without_people_train_and_evaluate(case, tmp_path):
    ignore = [] if case == "no_box" else [[10.0, 10.0, 90.0, 100.0], [100.0, 5.0, 150.0, 60.0]]
    net = tiny()
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
    batch = _batch([sample(0, [], ignore), sample(1, [], ignore)])
    losses = _step(net, opt, batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert losses["loss_box_reg"] == 0 and losses["loss_overlap_reg"] == 0 and losses["loss_overlap_prob"] == 0
    net.eval()
    out = net.test_step(batch)
    assert len(out) == 2 and all(o.pred.boxes.shape[1] == 4 for o in out)
    gtboxes = [dict(tag="mask", fbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]], extra=dict(ignore=1)) for b in ignore]
    ann = tmp_path / "val.odgt"
    ann.write_text("\n".join(json.dumps(dict(ID=f"img{i}", width=SIZE[1], height=SIZE[0], gtboxes=gtboxes))
                             for i in range(2)) + "\n")
    metric = CrowdHumanMetric(str(ann), log_table=False)
    metric.process(batch, out)
    res = metric.compute_metrics(metric.results)
    assert set(res) >= {"AP", "MR-2", "recall", "JI"}


def test_nms_switch_on_the_same_candidates():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 100
    cand = dict(boxes=torch.cat([xy, xy + 20 + torch.rand(60, 2, generator=g) * 30], 1),
                scores=torch.rand(60, generator=g), labels=torch.zeros(60, dtype=torch.long),
                overlap_boxes=torch.zeros(60, 4), overlap_probs=torch.zeros(60))
    keep, scores = apply_nms(cand, "greedy", 0.5, max_det=None)
    ref = torchvision.ops.nms(cand["boxes"], cand["scores"], 0.5)
    assert torch.equal(keep, ref) and torch.equal(scores, cand["scores"][ref])
    assert torch.equal(keep, standard_nms(cand["boxes"], cand["scores"][:, None], top_k=None, max_det=None)[0])
    with pytest.raises(ConfigError, match="model.nms"):
        apply_nms(cand, "soft")
    with pytest.raises(ConfigError, match="hallucinator"):
        tiny(nms="noh", hallucinator=False)


def test_noh_choice_is_forge_ops_noh_nms_cut_to_max_det():
    noh_nms = pytest.importorskip("forge.ops.noh_nms").noh_nms
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(80, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 20 + torch.rand(80, 2, generator=g) * 30], 1)
    cand = dict(boxes=boxes, scores=0.05 + 0.9 * torch.rand(80, generator=g),
                overlap_boxes=boxes + torch.randn(80, 4, generator=g) * 5, overlap_probs=torch.rand(80, generator=g))
    keep, scores = apply_nms(cand, "noh", 0.5, 0.01, max_det=10)
    ref_keep, ref_scores = noh_nms(boxes, cand["scores"], cand["overlap_boxes"], cand["overlap_probs"], 0.5, 0.01)
    assert torch.equal(keep, ref_keep[:10]) and torch.equal(scores, ref_scores[:10])
    greedy, _ = apply_nms(cand, "greedy", 0.5, max_det=None)
    assert len(ref_keep) >= len(greedy)  # easing only ever keeps more


def test_rpn_top_k_is_taken_over_all_levels():
    net = tiny()
    obj = torch.tensor([[0.1, 0.9, 0.2, 0.8, 0.7, 0.05]])
    net.rpn._pre_nms_top_n = dict(training=3, testing=3)
    net.rpn.eval()
    assert sorted(net.rpn._get_top_n_idx(obj, [2, 4]).tolist()[0]) == [1, 3, 4]
    net.rpn.top_k_all_levels = False  # torchvision's: per level
    assert sorted(net.rpn._get_top_n_idx(obj, [2, 4]).tolist()[0]) == [0, 1, 2, 3, 4]


def test_backbone_file_required_for_paper_rows_and_loaded_from_torchvision_layout(tmp_path):
    net = tiny(init=False, backbone_checkpoint="required")
    with pytest.raises(ConfigError, match=r"resnet18-f37072fd\.pth.*model\.backbone_checkpoint="):
        net.init_weights()
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    fpn = build_resnet_fpn("resnet18", "frozen_bn")
    load_imagenet(fpn, str(path))
    assert torch.equal(fpn.body.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert torch.equal(fpn.body.bn1.running_var, ref.bn1.running_var)
    assert not fpn.body.layer1[0].conv1.weight.requires_grad and fpn.body.layer2[0].conv1.weight.requires_grad
    with pytest.raises(FileNotFoundError, match="model.backbone_checkpoint"):
        load_imagenet(fpn, str(tmp_path / "absent.pth"))
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(KeyError, match="r34.pth"):
        load_imagenet(fpn, str(tmp_path / "r34.pth"))


def test_extra_level_is_average_pooled_p5():
    fpn = build_resnet_fpn("resnet18", "bn", 5, "bn", 32).eval()
    feats = fpn(torch.rand(1, 3, 128, 128))
    assert list(feats) == ["0", "1", "2", "3", "pool"]
    assert torch.allclose(feats["pool"], F.avg_pool2d(feats["3"], 2, 2))
