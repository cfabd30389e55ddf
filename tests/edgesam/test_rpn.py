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
from edgesam.rpn import ProposalNet, ProposalRecall, merge_proposals, merge_proposals_batch, point_prompt_with_proposals
from forge.data.structures import Detections, DetSample, ImageMeta, Instances
from forge.ops import box_iou

from .official_fixtures import build_case_model, generator, load_case, load_manifest


def _merge_slow(point, boxes, scores, topk=5, score_thr=0.1):
    """The official rule written out with Python lists: score > thr, strictly inside, k nearest centres, best score
    (first of equal scores in nearest-first order)."""
    x, y = point
    thr = float(np.float32(score_thr))  # scores are float32, compared with the threshold in float32 (as torch does)
    cands = [(b, float(sc), i) for i, (b, sc) in enumerate(zip(boxes.tolist(), scores.tolist()))
             if sc > thr and b[0] < x < b[2] and b[1] < y < b[3]]
    if not cands:
        return None
    cands.sort(key=lambda c: (((c[0][0] + c[0][2]) / 2 - x) ** 2 + ((c[0][1] + c[0][3]) / 2 - y) ** 2, c[2]))
    near = cands[:topk]
    best = max(near, key=lambda c: c[1])  # max() keeps the first of equal scores
    return torch.tensor(best[0])


def test_merge_proposals_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 2, 12, 14], [50, 50, 60, 60], [-5, -5, 30, 30], [4, 4, 9, 9],
                          [5, 5, 7, 7]])
    scores = torch.tensor([0.5, 0.9, 0.95, 0.6, 0.05, 0.7])
    # (6, 6) lies strictly inside boxes 0, 1, 3, 4 (score 0.05 <= 0.1: dropped), 5; centres (5, 5), (7, 8),
    # (12.5, 12.5), (6, 6): distances 1.41, 2.24, 9.19, 0 -> nearest first 5, 0, 1, 3
    assert torch.equal(merge_proposals((6, 6), boxes, scores), boxes[1])  # best score among the 5 nearest
    assert torch.equal(merge_proposals((6, 6), boxes, scores, topk=2), boxes[5])  # 5 (0.7) and 0 (0.5)
    assert torch.equal(merge_proposals((6, 6), boxes, scores, topk=1), boxes[5])
    # at (6.6, 6.6) box 4's centre (6.5, 6.5) is the nearest, but its score 0.05 is under the threshold 0.1
    assert torch.equal(merge_proposals((6.6, 6.6), boxes, scores, topk=1), boxes[5])
    assert torch.equal(merge_proposals((6.6, 6.6), boxes, scores, topk=1, score_thr=0.01), boxes[4])
    # on an edge is not inside (the official test is strict): x = 10 is on box 0's right edge
    assert merge_proposals((10, 6), boxes[:1], scores[:1]) is None
    # a click in no proposal: no box (the official box_labels = -1), also without proposals
    assert merge_proposals((70, 70), boxes, scores) is None
    assert merge_proposals((1, 1), torch.zeros(0, 4), torch.zeros(0)) is None
    # tied scores: the nearer one (the official code would sum the two boxes)
    tied = torch.tensor([[0.0, 0, 20, 20], [4, 4, 14, 14]])
    assert torch.equal(merge_proposals((9, 9), tied, torch.tensor([0.8, 0.8])), tied[1])
    with pytest.raises(ValueError, match="topk"):
        merge_proposals((6, 6), boxes, scores, topk=0)


def test_merge_proposals_batch_equals_the_slow_rule():
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        n = int(torch.randint(0, 40, (1,), generator=g))
        xy0 = torch.rand(n, 2, generator=g) * 90
        wh = torch.rand(n, 2, generator=g) * 40 + 1
        boxes = torch.cat([xy0, xy0 + wh], 1).round()  # integer corners: clicks on edges and tied distances occur
        scores = (torch.rand(n, generator=g) * 10).round() / 10  # tied scores occur
        points = (torch.rand(30, 2, generator=g) * 100).round()
        topk = 1 + trial % 6
        merged, found = merge_proposals_batch(points, boxes, scores, topk=topk)
        for i, p in enumerate(points.tolist()):
            want = _merge_slow(p, boxes, scores, topk)
            assert bool(found[i]) == (want is not None)
            if want is not None:
                assert torch.equal(merged[i], want), (trial, i)
                assert torch.equal(merge_proposals(p, boxes, scores, topk=topk), want)


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
    masks, iou, _ = point_prompt_with_proposals(predictor, (boxes, scores), (70, 50), topk=2)
    want, want_iou, _ = predictor.predict(np.array([[70.0, 50]]), np.array([1]), boxes[0].numpy().astype(np.float64),
                                          multimask_output=False)
    assert masks.shape == (1, 120, 176) and (masks == want).all() and iou[0] == pytest.approx(want_iou[0])
    # no proposal contains the click: point + two not-a-point tokens (the official box_labels = -1): the same as
    # the prompt encoder's tokens for a box whose corners are replaced by not-a-point, built here by hand
    masks, iou, low = point_prompt_with_proposals(predictor, (boxes[2:], scores[2:]), (70, 50))
    model = predictor.model
    xy = predictor.transform.apply_coords(torch.tensor([[70.0, 50]]), predictor.original_size)[None]
    point_tok = model.prompt_encoder.embed_points(xy, torch.ones(1, 1, dtype=torch.long), pad=False)
    nap = model.prompt_encoder.not_a_point_embed.weight.expand(1, 2, -1)
    with torch.no_grad():
        ref_low, ref_iou = model.mask_decoder(image_embeddings=predictor.features,
                                              image_pe=model.prompt_encoder.get_dense_pe(),
                                              sparse_prompt_embeddings=torch.cat([point_tok, nap], 1),
                                              dense_prompt_embeddings=model.prompt_encoder.no_mask_embed.weight
                                              .reshape(1, -1, 1, 1).expand(1, -1, *predictor.features.shape[-2:]),
                                              multimask_output=False)
    assert masks.shape == (1, 120, 176) and np.allclose(low, ref_low[0].numpy(), atol=1e-5)
    assert iou[0] == pytest.approx(float(ref_iou[0, 0]), abs=1e-6)
    with pytest.raises(ValueError, match="outside"):
        point_prompt_with_proposals(predictor, (boxes, scores), (500, 50))


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
