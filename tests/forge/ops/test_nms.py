"""The NMS family against slow references of the same definitions and against torchvision.ops (nms, batched_nms),
including degenerate boxes (zero area, zero width, identical, far apart)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torchvision.ops import batched_nms, box_iou, nms

from forge.ops.nms import NMS_FUNCTIONS, build_nms, cc_fast_nms, fast_nms, get_nms, soft_nms, standard_nms
from tests.forge.ops.test_boxes import DEGENERATE


def random_boxes(n: int, seed: int, clustered: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand((4, 2), generator=g) * 80 + 10
    c = centers[torch.randint(0, 4, (n,), generator=g)] if clustered else torch.rand((n, 2), generator=g) * 100
    c = c + torch.randn((n, 2), generator=g) * 4
    wh = torch.rand((n, 2), generator=g) * 30 + 5
    return torch.cat([c - wh / 2, c + wh / 2], 1)


def iou1(boxes, i, j) -> float:
    """torchvision's IoU of one pair; its NaN for an empty union read as 0, as torchvision's nms does."""
    return float(box_iou(boxes[i:i + 1], boxes[j:j + 1]).nan_to_num(0.0))


def slow_fast_nms(boxes, scores, thr, top_k, max_det):
    """Definition of Fast NMS, one box at a time: per class take the top_k scores; box j is kept iff
    no higher-ranked box i of its class (suppressed or not) has IoU(i, j) > thr."""
    dets = []
    for c in range(scores.shape[1]):
        order = sorted(range(len(boxes)), key=lambda i: -float(scores[i, c]))[:top_k]
        for rank, j in enumerate(order):
            if all(iou1(boxes, i, j) <= thr for i in order[:rank]):
                dets.append((float(scores[j, c]), j, c))
    dets.sort(key=lambda d: -d[0])
    return dets[:max_det]


def slow_greedy_nms(boxes, scores, thr, score_thr, max_det):
    dets = []
    for c in range(scores.shape[1]):
        cand = [i for i in range(len(boxes)) if float(scores[i, c]) > score_thr]
        cand.sort(key=lambda i: -float(scores[i, c]))
        kept = []
        for j in cand:
            if all(iou1(boxes, i, j) <= thr for i in kept):
                kept.append(j)
        dets += [(float(scores[j, c]), j, c) for j in kept]
    dets.sort(key=lambda d: -d[0])
    return dets[:max_det]


def slow_soft_nms(boxes, scores, thr, score_thr, top_k, max_det, method, sigma):
    """Soft-NMS as Bodla et al. state it: per class, take the highest remaining score, decay every other
    remaining score by a weight of its IoU with it, drop scores that fall to score_thr or below."""
    dets = []
    for c in range(scores.shape[1]):
        order = sorted(range(len(boxes)), key=lambda i: -float(scores[i, c]))[:top_k]
        s = {i: float(scores[i, c]) for i in order}
        remaining = [i for i in order if score_thr is None or s[i] > score_thr]
        while remaining:
            m = max(remaining, key=lambda i: s[i])
            remaining.remove(m)
            dets.append((s[m], m, c))
            for i in remaining:
                o = iou1(boxes, m, i)
                if method == "gaussian":
                    s[i] *= math.exp(-o * o / sigma)
                elif method == "linear":
                    s[i] *= 1 - o if o > thr else 1.0
                elif o > thr:
                    s[i] = 0.0
            remaining = [i for i in remaining if score_thr is None or s[i] > score_thr]
    dets.sort(key=lambda d: -d[0])
    return dets[:max_det]


def as_set(keep, labels):
    return {(int(k), int(c)) for k, c in zip(keep, labels)}


def tv_per_class(boxes, scores, thr, score_thr=None):
    """torchvision.ops.batched_nms on every (box, class) pair above score_thr -> {(box, class)}."""
    box_idx, labels = (scores > (-1.0 if score_thr is None else score_thr)).nonzero(as_tuple=True)
    keep = batched_nms(boxes[box_idx], scores[box_idx, labels], labels, thr)
    return {(int(box_idx[k]), int(labels[k])) for k in keep}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_nms_matches_definition(seed):
    boxes = random_boxes(60, seed)
    scores = torch.rand((60, 5), generator=torch.Generator().manual_seed(seed + 10))
    keep, labels, sc = fast_nms(boxes, scores, iou_threshold=0.5, top_k=20, max_det=40)
    ref = slow_fast_nms(boxes, scores, 0.5, 20, 40)
    assert as_set(keep, labels) == {(j, c) for _, j, c in ref}
    assert torch.all(sc[:-1] >= sc[1:])
    torch.testing.assert_close(sc, torch.tensor([s for s, _, _ in ref]))
    torch.testing.assert_close(sc, scores[keep, labels])


def test_fast_nms_differs_from_greedy_as_published():
    # A > B > C in score; IoU(A,B) > thr, IoU(B,C) > thr, IoU(A,C) small. Greedy keeps A and C; Fast NMS lets the
    # suppressed B still suppress C, so it keeps only A.
    boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    assert iou1(boxes, 0, 1) > 0.4 and iou1(boxes, 0, 2) < 0.4
    keep, _, _ = fast_nms(boxes, scores, iou_threshold=0.4)
    assert keep.tolist() == [0]
    keep, _, _ = standard_nms(boxes, scores, iou_threshold=0.4, score_threshold=0.0)
    assert keep.tolist() == [0, 2]


def test_fast_nms_threshold_is_inclusive_and_top_k_and_max_det():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8]])  # nested boxes: IoU = 80 / 100
    iou = iou1(boxes, 0, 1)
    scores = torch.tensor([[0.9], [0.8]])
    assert fast_nms(boxes, scores, iou_threshold=iou)[0].tolist() == [0, 1]  # keep if max IoU <= threshold
    assert fast_nms(boxes, scores, iou_threshold=iou - 1e-4)[0].tolist() == [0]
    many = random_boxes(50, 3, clustered=False)
    s = torch.rand((50, 3), generator=torch.Generator().manual_seed(4))
    keep, labels, _ = fast_nms(many, s, iou_threshold=1.0, top_k=7, max_det=None)
    assert len(keep) == 21 and torch.bincount(labels).tolist() == [7, 7, 7]
    assert len(fast_nms(many, s, iou_threshold=1.0, top_k=7, max_det=10)[0]) == 10
    keep, _, sc = fast_nms(many, s, iou_threshold=1.0, top_k=7, max_det=None, score_threshold=0.9)
    assert bool((sc > 0.9).all()) and 0 < len(sc) < 21


def test_cc_fast_nms_matches_definition():
    boxes = random_boxes(40, 7)
    scores = torch.rand((40, 4), generator=torch.Generator().manual_seed(8))
    best, cls = scores.max(1)
    order = best.argsort(descending=True)[:25].tolist()
    ref = [j for r, j in enumerate(order) if all(iou1(boxes, i, j) <= 0.5 for i in order[:r])]
    keep, labels, sc = cc_fast_nms(boxes, scores, iou_threshold=0.5, top_k=25, max_det=None)
    assert keep.tolist() == ref
    assert labels.tolist() == cls[ref].tolist()
    torch.testing.assert_close(sc, best[ref])
    keep, _, sc = cc_fast_nms(boxes, scores, iou_threshold=0.5, top_k=25, max_det=None, score_threshold=0.8)
    assert keep.tolist() == [j for j in ref if float(best[j]) > 0.8]


@pytest.mark.parametrize("seed", [0, 5])
def test_standard_nms_matches_greedy_reference(seed):
    boxes = random_boxes(50, seed)
    scores = torch.rand((50, 3), generator=torch.Generator().manual_seed(seed + 1))
    keep, labels, sc = standard_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.3, max_det=100, top_k=None)
    ref = slow_greedy_nms(boxes, scores, 0.5, 0.3, 100)
    assert as_set(keep, labels) == {(j, c) for _, j, c in ref}
    torch.testing.assert_close(sc, torch.tensor([s for s, _, _ in ref]))
    # per-class top_k cap before NMS
    keep, labels, _ = standard_nms(boxes, scores, iou_threshold=1.0, score_threshold=0.0, max_det=None, top_k=4)
    assert torch.bincount(labels).tolist() == [4, 4, 4]


@pytest.mark.parametrize("method,thr", [("gaussian", 0.5), ("linear", 0.3), ("linear", 0.6)])
@pytest.mark.parametrize("score_thr", [None, 0.2])
def test_soft_nms_matches_slow_loop(method, thr, score_thr):
    boxes = random_boxes(40, 11)
    scores = torch.rand((40, 3), generator=torch.Generator().manual_seed(12))
    keep, labels, sc = soft_nms(boxes, scores, iou_threshold=thr, score_threshold=score_thr, top_k=15,
                                max_det=None, method=method, sigma=0.5)
    ref = slow_soft_nms(boxes, scores, thr, score_thr, 15, None, method, 0.5)
    assert [(int(k), int(c)) for k, c in zip(keep, labels)] == [(j, c) for _, j, c in ref]
    torch.testing.assert_close(sc, torch.tensor([s for s, _, _ in ref]), rtol=1e-5, atol=1e-6)
    if score_thr is None:  # nothing dropped: Soft-NMS only re-ranks the top_k of each class
        assert len(keep) == 3 * 15


def test_soft_nms_hard_mode_is_greedy_nms_and_decays_scores():
    boxes = random_boxes(50, 2)
    scores = torch.rand((50, 4), generator=torch.Generator().manual_seed(3))
    kw = dict(iou_threshold=0.5, score_threshold=0.0, top_k=None, max_det=None)
    hard = soft_nms(boxes, scores, **kw, method="hard")
    std = standard_nms(boxes, scores, **kw)
    assert as_set(*hard[:2]) == as_set(*std[:2]) == tv_per_class(boxes, scores, 0.5, 0.0)
    torch.testing.assert_close(hard[2], std[2])
    keep, labels, sc = soft_nms(boxes, scores, **kw)
    assert bool((sc <= scores[keep, labels] + 1e-7).all()) and bool((sc < scores[keep, labels] - 1e-3).any())


# ---- degenerate boxes against torchvision: every pair of these cases has IoU 0 or 1, where Fast NMS and greedy
# NMS agree, so all four functions must give torchvision's answer.
FUNCTIONS = {
    "fast": lambda b, s: fast_nms(b, s, iou_threshold=0.5, max_det=None),
    "standard": lambda b, s: standard_nms(b, s, iou_threshold=0.5, max_det=None),
    "soft_hard": lambda b, s: soft_nms(b, s, iou_threshold=0.5, score_threshold=0.0, max_det=None, method="hard"),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE) + ["all"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_per_class_nms_on_degenerate_boxes_matches_torchvision(name, case):
    b = torch.cat([torch.tensor(v) + 3000 * k for k, v in enumerate(DEGENERATE.values())]) if case == "all" \
        else torch.tensor(DEGENERATE[case])
    scores = torch.rand((len(b), 2), generator=torch.Generator().manual_seed(len(b))) * 0.9 + 0.05
    keep, labels, sc = FUNCTIONS[name](b, scores)
    assert as_set(keep, labels) == tv_per_class(b, scores, 0.5)
    assert torch.equal(sc, sc.sort(descending=True).values) and not sc.isnan().any()
    if name == "fast":
        assert [(j, c) for _, j, c in slow_fast_nms(b, scores, 0.5, 200, None)] == list(zip(keep.tolist(),
                                                                                          labels.tolist()))


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_class_agnostic_fast_nms_on_degenerate_boxes_matches_torchvision(case):
    b = torch.tensor(DEGENERATE[case])
    scores = torch.rand((len(b), 3), generator=torch.Generator().manual_seed(len(b) + 1))
    keep, _, _ = cc_fast_nms(b, scores, iou_threshold=0.5, max_det=None)
    assert keep.tolist() == nms(b, scores.max(1).values, 0.5).tolist()


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_gaussian_soft_nms_on_degenerate_boxes_matches_slow_loop(case):
    b = torch.tensor(DEGENERATE[case])
    scores = torch.rand((len(b), 2), generator=torch.Generator().manual_seed(len(b) + 2))
    keep, labels, sc = soft_nms(b, scores, score_threshold=0.1, max_det=None)
    ref = slow_soft_nms(b, scores, 0.5, 0.1, 200, None, "gaussian", 0.5)
    assert list(zip(keep.tolist(), labels.tolist())) == [(j, c) for _, j, c in ref]
    torch.testing.assert_close(sc, torch.tensor([s for s, _, _ in ref]))


def test_zero_area_boxes_are_all_kept_by_every_nms():
    # the reported bug: NaN IoUs made Fast NMS keep only the top zero-area box of a class
    b = torch.tensor([[5.0, 5, 5, 5]] * 4 + [[7.0, 0, 7, 9]] * 3)
    scores = torch.linspace(0.9, 0.3, 7)[:, None]
    assert nms(b, scores[:, 0], 0.5).tolist() == list(range(7))
    for name, fn in NMS_FUNCTIONS.items():
        assert fn(b, scores)[0].tolist() == list(range(7)), name


# ---- one family: signature, registry, validation
def test_family_shares_keyword_only_options_names_order_and_defaults():
    common = None
    for name, fn in NMS_FUNCTIONS.items():
        params = list(inspect.signature(fn).parameters.values())
        assert [p.name for p in params[:2]] == ["boxes", "scores"]
        kw = [(p.name, p.default) for p in params[2:]]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), name
        common = kw[:4] if common is None else common
        assert kw[:4] == common == [("iou_threshold", 0.5), ("score_threshold", None), ("top_k", 200),
                                    ("max_det", 100)], name
        with pytest.raises(TypeError):
            fn(torch.zeros((1, 4)), torch.zeros((1, 1)), 0.5)  # options are keyword-only


def test_get_nms_and_build_nms():
    assert get_nms("fast") is fast_nms and get_nms("soft") is soft_nms
    with pytest.raises(ValueError, match=r"unknown NMS 'greedy'.*cc_fast.*standard"):
        get_nms("greedy")
    boxes, scores = random_boxes(30, 4), torch.rand((30, 3), generator=torch.Generator().manual_seed(5))
    bound = build_nms("standard", iou_threshold=0.6, score_threshold=0.2)
    for got, want in zip(bound(boxes, scores), standard_nms(boxes, scores, iou_threshold=0.6, score_threshold=0.2)):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match=r"'fast' \(fast_nms\) has no option\(s\) \['sigma'\]"):
        build_nms("fast", sigma=0.5)
    with pytest.raises(ValueError, match="soft_nms: method must be one of"):
        build_nms("soft", method="box")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        build_nms("cc_fast", top_k=0)
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
        build_nms("standard", iou_threshold=1.5)


def test_empty_inputs_and_bad_shapes():
    for fn in NMS_FUNCTIONS.values():
        keep, labels, scores = fn(torch.zeros((0, 4)), torch.zeros((0, 80)))
        assert keep.numel() == labels.numel() == scores.numel() == 0
        keep, _, _ = fn(torch.zeros((3, 4)), torch.zeros((3, 0)))
        assert keep.numel() == 0
    with pytest.raises(ValueError, match="fast_nms: scores must be"):
        fast_nms(torch.zeros((3, 4)), torch.zeros((2, 80)))
    with pytest.raises(ValueError, match="soft_nms: boxes must be"):
        soft_nms(torch.zeros((3, 5)), torch.zeros((3, 80)))
