"""NOH-NMS (forge.ops.noh_nms): the public code's outputs (fixture), a hand-computed case, greedy NMS as the
zero-probability limit, the paper's per-proposal sigmas, per-class batching and the NMS-family interface."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torchvision.ops import nms as tv_nms

from forge.ops import NMS_FUNCTIONS, build_nms, get_nms, multiclass_noh_nms, nms_extra_inputs, noh_nms
from forge.ops.noh_nms import _noh_rounds, _noh_sequential

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nohnms")
DEFAULTS = dict(sigma=0.2, prob_threshold=0.3, flag_threshold=0.6, area_offset=1.0)


def load_cases() -> list[dict]:
    arrays = np.load(os.path.join(FIXTURE, "noh_nms_official.npz"))
    with open(os.path.join(FIXTURE, "noh_nms_official.json")) as f:
        index = json.load(f)
    keys = ("boxes", "scores", "overlap_boxes", "overlap_probs", "keep", "new_scores")
    return [dict(meta, **{k: torch.from_numpy(arrays[f"{meta['key']}_{k}"]) for k in keys}) for meta in index]


CASES = load_cases()


def crowd(seed: int, n: int, classes: int = 1, quantise: float | None = None) -> dict:
    """Random pedestrian-like crowd: boxes jittered around a few people, hallucinated neighbours near the next
    person, probabilities in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    people = max(1, n // 4)
    xy = torch.rand((people, 2), generator=g) * torch.tensor([300.0, 200.0])
    w = 20 + 40 * torch.rand((people, 1), generator=g)
    base = torch.cat([xy, xy + torch.cat([w, 2.5 * w], 1)], 1)
    pick = torch.randint(0, people, (n,), generator=g)
    size = (base[:, 2:] - base[:, :2]).repeat(1, 2)
    boxes = base[pick] + 0.06 * size[pick] * torch.randn((n, 4), generator=g)
    shift = torch.tensor([0.25, 0.0, 0.25, 0.0]) * size[pick]
    over = base[pick] + shift + 0.05 * size[pick] * torch.randn((n, 4), generator=g)
    for b in (boxes, over):
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    scores = 0.02 + 0.98 * torch.rand(n, generator=g)
    if quantise:
        scores = (scores / quantise).round().clamp(min=1) * quantise
    return dict(boxes=boxes, scores=scores, overlap_boxes=over, overlap_probs=torch.rand(n, generator=g),
                idxs=torch.randint(0, classes, (n,), generator=g))


# ---- the public code (batched_noh_nms, method=3) on seeded crowded cases
def test_fixture_exercises_easing_ties_and_drops():
    names = {c["name"] for c in CASES}
    assert {"ties_quantised", "ties_duplicates", "low_scores", "probs_zero", "one_box"} <= names
    eased = [c for c in CASES if len(c["keep"]) > len(tv_nms(c["boxes"], c["scores"], c["iou_threshold"]))]
    assert len(eased) >= 10  # NOH-NMS keeps boxes greedy NMS removes in most cases


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_equals_public_code(case):
    keep, new = noh_nms(case["boxes"], case["scores"], case["overlap_boxes"], case["overlap_probs"],
                        case["iou_threshold"], case["score_threshold"])
    # the public loop returns its selection order; its caller re-sorts by score with an unstable argsort, so
    # among exactly equal final scores the order is the ascending index here (the fixture's order otherwise)
    ref_keep, ref_new = case["keep"], case["new_scores"]
    order = np.lexsort((ref_keep.numpy(), -ref_new.numpy().astype(np.float64)))
    assert keep.tolist() == ref_keep[order].tolist()
    torch.testing.assert_close(new, ref_new[order], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sequential_path_reproduces_the_public_selection_order(case):
    # the step-by-step path (used for ties) keeps the public code's in-place order: same sequence, same scores
    keep, s = _noh_sequential(case["boxes"], case["scores"], case["overlap_boxes"], case["overlap_probs"], None,
                              case["iou_threshold"], case["score_threshold"], *DEFAULTS.values())
    assert keep.tolist() == case["keep"].tolist()
    torch.testing.assert_close(s[keep], case["new_scores"], rtol=0, atol=1e-6)


def test_ties_take_the_sequential_path_and_others_the_rounds():
    for case in CASES:
        args = (case["boxes"], case["scores"], case["overlap_boxes"], case["overlap_probs"], None, None,
                case["iou_threshold"], case["score_threshold"], *DEFAULTS.values())
        assert (_noh_rounds(*args) is None) == case["name"].startswith("ties"), case["name"]


# ---- hand-computed
def three_boxes() -> dict:
    # A selected first; B and C overlap A with IoU (+1 areas) 160/302 and 180/282 > 0.5.
    # A's neighbour sits 0.25 widths right: B (0.2 widths) gets exp(-0.05^2 / 0.08), C (0.1) exp(-0.15^2 / 0.08);
    # both are >= 0.6, so both are flagged. B's neighbour is exactly C, but B is flagged: C (IoU 180/282 with B)
    # is suppressed.
    return dict(boxes=torch.tensor([[0.0, 0, 10, 20], [2, 0, 12, 20], [1, 0, 11, 20]]),
                scores=torch.tensor([0.9, 0.8, 0.7]),
                overlap_boxes=torch.tensor([[2.5, 0, 12.5, 20], [1, 0, 11, 20], [0, 0, 10, 20]]),
                overlap_probs=torch.tensor([0.8, 0.9, 0.1]))


def test_three_box_rescoring_by_hand():
    case = three_boxes()
    w_b, w_c = math.exp(-0.05 ** 2 / 0.08), math.exp(-0.15 ** 2 / 0.08)
    assert w_b >= 0.6 and w_c >= 0.6
    keep, new = noh_nms(**case)
    assert keep.tolist() == [0, 1]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.8 * w_b]), rtol=0, atol=1e-7)
    # without the flag rule B eases C: C sits exactly on B's neighbour (weight 1) and keeps its eased score
    keep, new = noh_nms(**case, flag_threshold=2.0)
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.8 * w_b, 0.7 * w_c]), rtol=0, atol=1e-7)
    # A not confident (p <= 0.3): greedy, B and C suppressed by A
    probs = torch.tensor([0.3, 0.9, 0.1])
    assert noh_nms(**dict(case, overlap_probs=probs))[0].tolist() == [0]
    # without the +1 in the areas B's IoU with A is 160/240 and C's 180/220: same decisions here
    assert noh_nms(**case, area_offset=0.0)[0].tolist() == [0, 1]


def test_paper_form_per_proposal_sigmas():
    case = three_boxes()
    sig = torch.tensor([[0.1, 0.2, 0.2, 0.2]] * 3)  # A's x offset known to 0.1
    keep, new = noh_nms(**case, overlap_sigmas=sig, flag_threshold=2.0)
    w_b, w_c = math.exp(-0.5 * (0.05 / 0.1) ** 2), math.exp(-0.5 * (0.15 / 0.1) ** 2)
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.8 * w_b, 0.7 * w_c]), rtol=0, atol=1e-7)
    # a constant sigma of 0.2, (N,) or (N, 4), is the public code's fixed form
    for case in CASES[:6]:
        args = (case["boxes"], case["scores"], case["overlap_boxes"], case["overlap_probs"])
        fixed = noh_nms(*args)
        for sig in (torch.full((len(case["boxes"]),), 0.2), torch.full((len(case["boxes"]), 4), 0.2)):
            paper = noh_nms(*args, overlap_sigmas=sig)
            assert paper[0].tolist() == fixed[0].tolist()
            torch.testing.assert_close(paper[1], fixed[1], rtol=0, atol=1e-6)


def test_public_quirks_low_scores():
    boxes = torch.tensor([[0.0, 0, 10, 20], [5, 0, 15, 20], [100, 0, 110, 20]])
    scores = torch.tensor([0.9, 0.005, 0.004])
    probs = torch.zeros(3)
    # box 1 touches box 0 with IoU 6*21/(2*231 - 6*21) < 0.5: weight 1, but it is below the threshold: dropped;
    # box 2 touches nothing and is never rescored: kept at 0.004
    keep, new = noh_nms(boxes, scores, boxes.clone(), probs)
    assert keep.tolist() == [0, 2]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.004]))


# ---- greedy NMS as the limit
@pytest.mark.parametrize("seed", range(8))
def test_zero_probabilities_equal_greedy_nms(seed):
    case = crowd(seed, 150)
    case["overlap_probs"] = torch.zeros(150)
    del case["idxs"]
    keep, new = noh_nms(**case, area_offset=0.0)
    ref = tv_nms(case["boxes"], case["scores"], 0.5)
    assert keep.tolist() == ref.tolist()
    assert torch.equal(new, case["scores"][ref])
    # torchvision plus the score threshold: lower scores that no kept box touches stay
    case["scores"] = torch.rand(150, generator=torch.Generator().manual_seed(seed))
    keep, _ = noh_nms(**case, area_offset=0.0, score_threshold=0.01)
    high = (case["scores"] >= 0.01).nonzero().squeeze(1)
    greedy = high[tv_nms(case["boxes"][high], case["scores"][high], 0.5)]
    assert set(greedy.tolist()) <= set(keep.tolist())
    assert all(case["scores"][j] < 0.01 for j in set(keep.tolist()) - set(greedy.tolist()))


# ---- the two implementations, batching, devices
@pytest.mark.parametrize("seed", range(6))
def test_rounds_equal_the_sequential_loop(seed):
    case = crowd(100 + seed, 300)
    del case["idxs"]
    opts = (0.5, 0.01, *DEFAULTS.values())
    rounds = _noh_rounds(case["boxes"], case["scores"], case["overlap_boxes"], case["overlap_probs"], None, None,
                         *opts)
    assert rounds is not None  # continuous scores: no ties
    kept, s = rounds
    seq_keep, seq_s = _noh_sequential(case["boxes"], case["scores"], case["overlap_boxes"], case["overlap_probs"],
                                      None, *opts)
    assert sorted(seq_keep.tolist()) == kept.nonzero().squeeze(1).tolist()
    torch.testing.assert_close(s[seq_keep], seq_s[seq_keep], rtol=0, atol=1e-6)


def test_classes_are_independent():
    case = crowd(7, 240, classes=3)
    keep, new = noh_nms(**case)
    parts = []
    for c in range(3):
        g = (case["idxs"] == c).nonzero().squeeze(1)
        k, s = noh_nms(case["boxes"][g], case["scores"][g], case["overlap_boxes"][g], case["overlap_probs"][g])
        parts += list(zip(s.tolist(), g[k].tolist()))
    assert sorted(zip(new.tolist(), keep.tolist())) == sorted(parts)
    assert new.tolist() == sorted(new.tolist(), reverse=True)
    # ties (quantised scores) with several classes go through the per-class sequential path
    case = crowd(8, 200, classes=2, quantise=0.1)
    keep, new = noh_nms(**case)
    for c in range(2):
        g = (case["idxs"] == c).nonzero().squeeze(1)
        k, _ = noh_nms(case["boxes"][g], case["scores"][g], case["overlap_boxes"][g], case["overlap_probs"][g])
        assert sorted(g[k].tolist()) == sorted(j for j in keep.tolist() if case["idxs"][j] == c)


def test_float64_and_empty_inputs():
    case = three_boxes()
    keep, new = noh_nms(**{k: v.double() for k, v in case.items()})
    assert keep.tolist() == [0, 1] and new.dtype == torch.float64
    keep, new = noh_nms(torch.zeros((0, 4)), torch.zeros(0), torch.zeros((0, 4)), torch.zeros(0))
    assert keep.shape == (0,) and keep.dtype == torch.long and new.shape == (0,)
    keep, labels, new = multiclass_noh_nms(torch.zeros((0, 4)), torch.zeros((0, 2)), overlap_boxes=torch.zeros((0, 4)),
                                           overlap_probs=torch.zeros(0))
    assert keep.numel() == labels.numel() == new.numel() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    for case in CASES:
        args = [case[k] for k in ("boxes", "scores", "overlap_boxes", "overlap_probs")]
        cpu = noh_nms(*args, case["iou_threshold"], case["score_threshold"])
        gpu = noh_nms(*[a.cuda() for a in args], case["iou_threshold"], case["score_threshold"])
        assert gpu[0].device.type == "cuda"
        assert gpu[0].tolist() == cpu[0].tolist()
        torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=0, atol=1e-6)


# ---- inputs are checked
def test_bad_inputs_name_the_argument():
    case = three_boxes()
    with pytest.raises(ValueError, match=r"overlap_boxes must be \(N, 4\) with N=3"):
        noh_nms(**dict(case, overlap_boxes=torch.zeros((2, 4))))
    with pytest.raises(ValueError, match="scores must be"):
        noh_nms(**dict(case, scores=torch.zeros((3, 1))))
    with pytest.raises(ValueError, match="overlap_probs has non-finite"):
        noh_nms(**dict(case, overlap_probs=torch.tensor([0.5, float("nan"), 0.1])))
    with pytest.raises(ValueError, match="x2 < x1"):
        noh_nms(**dict(case, overlap_boxes=torch.tensor([[5.0, 0, 1, 20]] * 3)))
    with pytest.raises(ValueError, match="overlap_sigmas must be > 0"):
        noh_nms(**case, overlap_sigmas=torch.zeros(3))
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
        noh_nms(**case, iou_threshold=2.0)


# ---- behind the NMS family interface
def test_selectable_by_name_with_per_call_inputs():
    assert "noh" not in NMS_FUNCTIONS  # those take boxes and scores only (YOLACT's choices)
    assert get_nms("noh") is multiclass_noh_nms
    assert nms_extra_inputs(get_nms("standard")) == ()
    nms = build_nms("noh", iou_threshold=0.5, score_threshold=0.05, top_k=None, max_det=200)
    assert nms_extra_inputs(nms) == ("overlap_boxes", "overlap_probs", "overlap_sigmas")
    with pytest.raises(ValueError, match=r"has no option\(s\) \['overlap_boxes'\]"):
        build_nms("noh", overlap_boxes=torch.zeros((0, 4)))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        build_nms("noh", sigma=0.0)
    # one class: the public detector's pipeline (scores > 0.05, then NOH-NMS with its 0.01 drop threshold)
    case = CASES[2]
    pred = {"overlap_boxes": case["overlap_boxes"], "overlap_probs": case["overlap_probs"]}
    keep, labels, new = nms(case["boxes"], case["scores"][:, None], **{k: pred[k] for k in nms_extra_inputs(nms)
                                                                       if k in pred})
    high = (case["scores"] > 0.05).nonzero().squeeze(1)
    ref_keep, ref_new = noh_nms(case["boxes"][high], case["scores"][high], case["overlap_boxes"][high],
                                case["overlap_probs"][high])
    assert keep.tolist() == high[ref_keep].tolist() and labels.eq(0).all()
    assert torch.equal(new, ref_new)
    # several classes, per-class probabilities: the per-class runs of noh_nms
    c = crowd(9, 120)
    scores = torch.stack([c["scores"], c["scores"].flip(0)], 1)
    probs = torch.stack([c["overlap_probs"], 1 - c["overlap_probs"]], 1)
    keep, labels, new = get_nms("noh")(c["boxes"], scores, top_k=None, max_det=None, overlap_boxes=c["overlap_boxes"],
                                       overlap_probs=probs)
    for k in range(2):
        ref_keep, ref_new = noh_nms(c["boxes"], scores[:, k], c["overlap_boxes"], probs[:, k])
        assert keep[labels == k].tolist() == ref_keep.tolist()
        assert torch.equal(new[labels == k], ref_new)


def test_zero_area_boxes_are_all_kept():
    # as every NMS of the family (tests/forge/ops/test_nms.py): zero-area boxes never intersect anything
    b = torch.tensor([[5.0, 5, 5, 5]] * 4 + [[7.0, 0, 7, 9]] * 3)
    scores = torch.linspace(0.9, 0.3, 7)
    ob = torch.tensor([[5.0, 5, 6, 6]] * 7)
    keep, new = noh_nms(b, scores, ob, torch.full((7,), 0.9))
    assert keep.tolist() == list(range(7)) and torch.equal(new, scores)
