"""The region-proposal module on the CPU demo's student: the encoder loads from a forge-train checkpoint of ours
(mmengine file, ``student.image_encoder.*``), the proposal-prompt statistics by hand, the shapes configs compose with
the student's architecture, and (slow) benchmarks/edgesam_rpn_demo.py end to end in its shortened form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from mmengine.logging import HistoryBuffer

from edgesam.rpn import ProposalNet, ProposalPromptStats, load_encoder
from forge.ops import box_iou
from tests.benchmark_script import load_benchmark
from tests.forge.helpers import compose_cfg

STAGES = [[16, "SN"], [32, "DN"], [64, "DSNN"], [128, "DN"]]


def _student_sam(size: int = 64):
    """The demo student's SAM (model/edgesam/shapes_student.yaml), seeded."""
    torch.manual_seed(0)
    cfg = compose_cfg(["experiment=edgesam/eval_shapes_center_point", f"model.sam.image_encoder.img_size={size}"],
                      "test")
    return instantiate(cfg.model.sam)


def _save_run_checkpoint(path, sam) -> dict:
    """A checkpoint as forge-train writes it for a distillation run: mmengine wrapper, message hub, student.*."""
    state = {f"student.{k}": v for k, v in sam.state_dict().items()}
    loss = HistoryBuffer()
    loss.update(0.5)  # numpy arrays in an mmengine object: what made torch.load(weights_only=True) refuse the file
    torch.save({"meta": {"iter": 3}, "state_dict": state, "message_hub": {"log_scalars": {"loss": loss}}}, path)
    return state


def test_encoder_loads_from_a_forge_train_checkpoint(tmp_path):
    sam = _student_sam()
    path = tmp_path / "iter_3.pth"
    state = _save_run_checkpoint(path, sam)
    cfg = compose_cfg(["experiment=edgesam/rpn_shapes_student", f"model.encoder_checkpoint={path}",
                       "pipeline.img_size=64"], "train")
    net = instantiate(cfg.model)
    assert isinstance(net, ProposalNet) and net.freeze_encoder
    enc = net.encoder.state_dict()
    assert set(enc) == {k.removeprefix("student.image_encoder.") for k in state if "image_encoder." in k}
    for key, value in enc.items():
        assert torch.equal(value, state[f"student.image_encoder.{key}"]), key
    # the same encoder gives SAM's image embeddings (the proposal net runs its own copy at evaluation)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.encoder.eval()(x), sam.image_encoder.eval()(x))
    # an encoder of another width: refused, naming the file
    other = instantiate(cfg.model.encoder, stages=[[24, "SN"], [32, "DN"], [64, "DSNN"], [128, "DN"]])
    with pytest.raises(ValueError, match=r"iter_3\.pth: does not fit the encoder .*of another shape"):
        load_encoder(other, str(path))
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_encoder(other, str(tmp_path / "missing.pth"))


def _record(found, boxes, gt_boxes, pred, gt):
    return dict(rpn_found=torch.tensor(found), rpn_boxes=torch.tensor(boxes, dtype=torch.float32),
                gt_boxes=torch.tensor(gt_boxes, dtype=torch.float32), pred_masks=pred, gt_masks=gt)


def test_proposal_prompt_stats_by_hand():
    gt = torch.zeros(3, 10, 10, dtype=torch.bool)
    gt[0, :5, :5] = gt[1, 5:, 5:] = gt[2, :, :2] = True  # areas 25, 25, 20
    pred = torch.zeros_like(gt)
    pred[0, :5, :4] = True          # IoU 20/25
    pred[1, 5:, 5:] = True          # IoU 1
    pred[2, :5, :2] = True          # IoU 10/20
    gt_boxes = [[0, 0, 5, 5], [5, 5, 10, 10], [0, 0, 2, 10]]
    boxes = [[0, 0, 5, 4], [0, 0, 0, 0], [0, 0, 2, 5]]  # click 1 got no box
    metric = ProposalPromptStats()
    metric.process({}, [_record([True, False, True], boxes, gt_boxes, pred[:], gt)])
    empty = _record([], np.zeros((0, 4)), np.zeros((0, 4)), pred[:0], gt[:0])
    empty["rpn_found"] = torch.zeros(0, dtype=torch.bool)
    metric.process({}, [empty])  # an image without instances adds nothing
    out = metric.compute_metrics(metric.results)
    assert out["hit"] == pytest.approx(2 / 3)
    assert out["box_iou"] == pytest.approx((0.8 + 0.5) / 2)  # 20/25 and 10/20
    assert out["box_iou@0.5"] == pytest.approx(2 / 3)
    assert out["mIoU_hit"] == pytest.approx((0.8 + 0.5) / 2) and out["mIoU_miss"] == pytest.approx(1.0)
    ref = box_iou(torch.tensor(boxes[:1], dtype=torch.float32), torch.tensor(gt_boxes[:1], dtype=torch.float32))
    assert float(ref) == pytest.approx(0.8)
    none = ProposalPromptStats()
    none.process({}, [_record([False], [[0, 0, 0, 0]], [gt_boxes[0]], pred[:1], gt[:1])])
    got = none.compute_metrics(none.results)
    assert got["hit"] == 0 and math.isnan(got["box_iou"]) and math.isnan(got["mIoU_hit"])
    with pytest.raises(ValueError, match="no 'rpn_found'"):
        ProposalPromptStats().process({}, [dict(pred_masks=pred, gt_masks=gt)])


def test_shapes_configs_use_the_demo_students_architecture():
    phase1 = compose_cfg(["experiment=edgesam/shapes_phase1"], "train").model.student_encoder
    teacher = compose_cfg(["experiment=edgesam/shapes_phase1"], "train").model.teacher.model
    plain = compose_cfg(["experiment=edgesam/eval_shapes_center_point"], "test")
    rpn = compose_cfg(["experiment=edgesam/eval_shapes_center_point_rpn", "model.rpn_checkpoint=r.pth"], "test")
    train = compose_cfg(["experiment=edgesam/rpn_shapes_student", "model.encoder_checkpoint=s.pth"], "train")
    for enc in (plain.model.sam.image_encoder, rpn.model.rpn.encoder, train.model.encoder):
        assert enc._target_ == phase1._target_ and list(map(list, enc.stages)) == STAGES == list(
            map(list, phase1.stages)) and enc.out_chans == phase1.out_chans
    for key in ("prompt_dim", "decoder_heads", "decoder_mlp_dim", "iou_head_hidden_dim"):
        assert plain.model.sam[key] == teacher[key], key
    assert plain.model.mode == rpn.model.mode == "center_point" and plain.model.get("rpn") is None
    assert (rpn.model.rpn_topk, rpn.model.rpn_score_thr, rpn.model.rpn.encoder_checkpoint) == (5, 0.1, None)
    assert rpn.model.rpn.encoder.img_size == rpn.model.sam.image_encoder.img_size == 128
    assert [e._target_ for e in rpn.dataset.evaluator] == ["forge.evaluation.prompt.PromptSegMetric",
                                                            "edgesam.rpn.ProposalPromptStats"]
    assert train.model.freeze_encoder is True and train.pipeline.img_size == 128 and train.runtime.num_threads == 1
    assert plain.dataset.root.endswith("shapes_edgesam") and train.dataset.root.endswith("shapes_edgesam")


@pytest.mark.slow  # four forge-train / forge-test processes: ~60 s at one thread
def test_quick_rpn_demo(tmp_path):
    demo = load_benchmark("edgesam_rpn_demo")
    student = tmp_path / "student.pth"
    _save_run_checkpoint(student, _student_sam(64))
    md = tmp_path / "bench.md"
    md.write_text("# benchmarks\n\nkept text\n")
    out = demo.main(["--quick", "--student", str(student), "--data", str(tmp_path / "data"), "--work-dir",
                     str(tmp_path / "work"), "--md", str(md)])
    for key in ("ar100", "recall50", "miou_point", "miou_point_rpn", "miou_box"):
        assert 0 <= out[key] <= 1, key
    assert 0 <= out["stats"]["hit"] <= 1
    text = md.read_text()
    assert "kept text" in text and "<!-- edgesam-rpn:begin -->" in text and "| centre-point mIoU, with" in text
    assert (tmp_path / "work" / "student.pth").is_file()
