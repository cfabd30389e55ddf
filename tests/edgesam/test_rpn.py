"""The optional region-proposal module: proposal merging by hand, the FCOS model on RepViT features (frozen encoder,
EdgeSAM checkpoint, learning on a tiny set, coordinates back to the original image), the recall metric, the point +
proposal prompt through the predictor, and a short run of the shapes experiment on the shared runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesam.predictor import SamPredictor
from edgesam.rep_vit import RepViT
from edgesam.rpn import ProposalNet, ProposalRecall, merge_proposals, point_prompt_with_proposals
from forge.data.structures import Detections, DetSample, ImageMeta, Instances
from forge.ops import box_iou

from .official_fixtures import build_case_model, generator, load_case, load_manifest


def test_merge_proposals_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 2, 12, 14], [50, 50, 60, 60], [-5, -5, 30, 30]])
    scores = torch.tensor([0.5, 1.5, 0.9, 0.1])
    # (6, 6) lies in boxes 0, 1, 3; centres (5, 5), (7, 8), (12.5, 12.5): distances 1.41, 2.24, 9.19 -> 0 and 1
    got = merge_proposals((6, 6), boxes, scores, k=2)
    expect = (0.5 * boxes[0] + 1.5 * boxes[1]) / 2.0
    torch.testing.assert_close(got, expect)
    assert torch.equal(merge_proposals((6, 6), boxes, scores, k=1), boxes[0])
    # a click in no proposal: the nearest centres among all of them
    assert torch.equal(merge_proposals((70, 70), boxes, scores, k=1), boxes[2])
    assert merge_proposals((1, 1), torch.zeros(0, 4), torch.zeros(0)) is None


def _samples(boxes: torch.Tensor, n: int, size: int, scale: float = 1.0) -> list[DetSample]:
    ori = int(round(size / scale))
    meta = ImageMeta(image_id=0, ori_shape=(ori, ori), img_shape=(size, size), pad_shape=(size, size),
                     scale_factor=(scale, scale))
    gt = Instances(boxes=boxes, labels=torch.zeros(len(boxes), dtype=torch.long))
    return [DetSample(meta=meta, gt=gt) for _ in range(n)]


def _image(size: int) -> torch.Tensor:
    """Two flat squares on a noisy background, as pixel values."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g) * 60 + 40
    x[:, :, 20:70, 16:60] = torch.tensor([230.0, 30, 40])[:, None, None]
    x[:, :, 80:120, 70:118] = torch.tensor([30.0, 60, 230])[:, None, None]
    return x


BOXES = torch.tensor([[16.0, 20, 60, 70], [70, 80, 118, 120]])


@pytest.mark.slow  # ~30 s alone on a CPU core, over a minute on a shared machine
def test_learns_boxes_on_a_tiny_set():
    torch.manual_seed(0)
    net = ProposalNet(RepViT(img_size=128), freeze_encoder=False, score_thresh=0.0)
    x, samples = _image(128), _samples(BOXES, 1, 128)
    data = net.data_preprocessor({"inputs": x, "data_samples": samples}, True)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    net.train()
    first = None
    for _ in range(40):
        losses = net(data["inputs"], samples, mode="loss")
        total = sum(losses.values())
        first = first if first is not None else total.item()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < 0.6 * first
    net.eval()
    pred = net(data["inputs"], samples, mode="predict")[0].pred
    assert (pred.labels == 0).all() and (pred.scores[:-1] >= pred.scores[1:]).all()
    assert box_iou(BOXES, pred.boxes[:10]).max(dim=1).values.min() > 0.5  # both objects among the top 10


def test_frozen_encoder_checkpoint_and_original_coordinates(tmp_path):
    ckpt = tmp_path / "edge_sam_seeded.pth"
    state = generator().seeded_state_dict(load_manifest("edge_sam"))
    torch.save(state, ckpt)
    net = ProposalNet(encoder_checkpoint=str(ckpt), freeze_encoder=True)
    enc = net.encoder.state_dict()
    for key in ("features.1.token_mixer.0.conv.c.weight", "fuse_stage2.weight", "neck.0.weight"):
        assert torch.equal(enc[key], state["image_encoder." + key])
    net.train()
    assert not net.encoder.training and all(not p.requires_grad for p in net.encoder.parameters())
    x = _image(128)
    samples = _samples(BOXES, 1, 128)
    data = net.data_preprocessor({"inputs": x, "data_samples": samples}, True)
    sum(net(data["inputs"], samples, mode="loss").values()).backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert net.fpn.inner_blocks[0][0].weight.grad is not None
    net.eval()
    same = net(data["inputs"], samples, mode="predict")[0].pred
    half = net(data["inputs"], _samples(BOXES, 1, 128, scale=0.5), mode="predict")[0].pred
    torch.testing.assert_close(half.boxes, same.boxes * 2)  # input frame -> original pixels
    with pytest.raises(ValueError, match="needs data_samples with gt"):
        net(data["inputs"], None, mode="loss")


def test_proposal_recall_by_hand():
    metric = ProposalRecall(max_proposals=2)
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    s = _samples(gt, 1, 100)[0]
    # box 0 exact (IoU 1), box 1 IoU 0.64 (8 x 8 inside 10 x 10 -> 64 / 100), box 2 only as the 3rd proposal
    s.pred = Detections(boxes=torch.tensor([[0.0, 0, 10, 10], [21, 21, 29, 29], [40, 40, 50, 50]]),
                        scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.zeros(3, dtype=torch.long))
    metric.process({}, [s])
    out = metric.compute_metrics(metric.results)
    thresholds = np.linspace(0.5, 0.95, 10)
    expect = np.mean([(1 + (0.64 >= t)) / 3 for t in thresholds])
    assert out["recall@0.5"] == pytest.approx(2 / 3) and out["AR@2"] == pytest.approx(expect)


def test_point_prompt_with_proposals_uses_the_merged_box():
    predictor = SamPredictor(build_case_model(load_case("sam_tiny")[0]))
    predictor.set_image(generator().fixture_image())
    boxes = torch.tensor([[30.0, 20, 130, 95], [60, 40, 100, 70], [140, 90, 170, 115]])
    scores = torch.tensor([0.9, 0.3, 0.8])
    masks, iou, _ = point_prompt_with_proposals(predictor, (boxes, scores), (70, 50), k=2)
    box = ((0.9 * boxes[0] + 0.3 * boxes[1]) / 1.2).numpy()
    want, want_iou, _ = predictor.predict(np.array([[70.0, 50]]), np.array([1]), box.astype(np.float64),
                                          multimask_output=False)
    assert masks.shape == (1, 120, 176) and (masks == want).all() and iou[0] == pytest.approx(want_iou[0])
    masks, iou, _ = point_prompt_with_proposals(predictor, (torch.zeros(0, 4), torch.zeros(0)), (70, 50))
    _, all_iou, _ = predictor.predict(np.array([[70.0, 50]]), np.array([1]), multimask_output=True)
    assert masks.shape == (1, 120, 176) and iou[0] == pytest.approx(all_iou.max())


@pytest.mark.slow  # a forge-train subprocess: ~25 s of CPU
def test_shapes_experiment_runs_on_the_shared_runner(tmp_path):
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "forge-make-shapes"), str(tmp_path / "shapes"), "--train", "8", "--val", "4",
                    "--size", "128"], check=True, capture_output=True, timeout=120)
    proc = subprocess.run([str(bin_dir / "forge-train"), "experiment=edgesam/rpn_shapes",
                           f"dataset.root={tmp_path / 'shapes'}", f"work_dir={tmp_path / 'run'}",
                           "pipeline.img_size=128", "schedule.max_iters=2", "schedule.warmup_iters=1",
                           "schedule.batch_size=4", "schedule.num_workers=0", "runtime.num_threads=1",
                           "runtime.vis.tensorboard=false"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "run").rglob("*.log"))
    assert "proposal/AR@100" in logs and "loss_cls" in logs
