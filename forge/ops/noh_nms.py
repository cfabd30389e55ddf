"""NOH-NMS (Zhou et al., *NOH-NMS: Improving Pedestrian Detection by Nearby Objects Hallucination*, ACM MM 2020).

Greedy NMS, except that the selected box ``M`` does not remove a box ``b`` that overlaps it but sits where ``M``'s
hallucinated nearest neighbour is: every proposal comes with ``overlap_boxes`` (the Nearby Objects Hallucinator's
box of its nearest overlapping object) and ``overlap_probs`` (how likely that object exists), and ``b``'s score is
multiplied by a Gaussian of how far ``b`` is from the hallucinated box instead of being set to 0.

:func:`noh_nms` reproduces the public code (``TencentYoutuResearch/PedestrianDetection-NohNMS``,
``detectron2/layers/nms.py::batched_noh_nms(..., method=3)``) output for output, quirks included
(``docs/nohnms.md``, "NOH-NMS: public code vs paper"):

* IoU: each box's area is ``(x2 - x1 + 1) * (y2 - y1 + 1)``, the intersection ``iw * ih`` without the ``+1``, and
  a pair only interacts when ``iw > 0`` and ``ih > 0``.
* Deltas of ``b`` (and of the hallucinated box) relative to ``M``: ``((x1_b - x1_M) / w_M, (y1_b - y1_M) / h_M,
  log(w_b / w_M), log(h_b / h_M))``, widths without the ``+1``; the weight is
  ``exp(-|d_b - d_noh|^2 / (2 * 0.2^2))`` (fixed sigma 0.2).
* ``M`` eases only when its overlap probability is ``> 0.3`` and it is not *flagged*; a box whose weight is
  ``>= 0.6`` is flagged, and a flagged box, once selected, suppresses like greedy NMS.
* A box is rescored only where it intersects ``M``; a rescored box whose score is ``< score_threshold`` is dropped
  at once (even when its weight was 1), an untouched one never is.
* Of two exactly tied, interacting boxes the one first in the public code's in-place order (the maximum swapped
  forward; a dropped box's slot takes the last box) is selected first.

Arithmetic follows the public code's dtypes under NumPy 2 (box maths in the boxes' dtype, the Gaussian weight and
the rescoring product in float64, then rounded to the scores' dtype): on the fixture cases the kept indices are the
same and scores differ by at most one float32 ulp (NumPy's float32 ``log`` is not torch's).

Two paths: :func:`_noh_rounds` (the default; selects every box that is a local maximum of the interaction graph at
once, a few rounds per crowd) and :func:`_noh_sequential` (the public loop step by step, for ties). Both are plain
torch: CPU or CUDA, a host sync per round or step.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["multiclass_noh_nms", "noh_nms"]

# multiclass_noh_nms's per-call inputs and their per-box trailing shapes (forge.ops.nms.nms_extra_inputs)
EXTRA_INPUTS = {"overlap_boxes": (4,), "overlap_probs": (), "overlap_sigmas": (4,)}


def _check_inputs(name: str, boxes: Tensor, scores: Tensor, overlap_boxes: Tensor, overlap_probs: Tensor,
                  overlap_sigmas: Tensor | None, idxs: Tensor | None) -> None:
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != (n,):
        raise ValueError(f"{name}: scores must be (N,) with N={n}, got {tuple(scores.shape)}")
    if overlap_boxes.shape != (n, 4):
        raise ValueError(f"{name}: overlap_boxes must be (N, 4) with N={n}, got {tuple(overlap_boxes.shape)}")
    if overlap_probs.shape != (n,):
        raise ValueError(f"{name}: overlap_probs must be (N,) with N={n}, got {tuple(overlap_probs.shape)}")
    if overlap_sigmas is not None and overlap_sigmas.shape not in ((n,), (n, 4)):
        raise ValueError(f"{name}: overlap_sigmas must be (N,) or (N, 4) with N={n}, got {tuple(overlap_sigmas.shape)}")
    if idxs is not None and idxs.shape != (n,):
        raise ValueError(f"{name}: idxs must be (N,) with N={n}, got {tuple(idxs.shape)}")
    for key, t in (("boxes", boxes), ("scores", scores), ("overlap_boxes", overlap_boxes),
                   ("overlap_probs", overlap_probs), ("overlap_sigmas", overlap_sigmas)):
        if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: {key} has non-finite values")
    if overlap_boxes.numel() and bool(((overlap_boxes[:, 2:] - overlap_boxes[:, :2]) < 0).any()):
        # the public code takes log(w) of the hallucinated box: a negative size would give NaN scores
        raise ValueError(f"{name}: overlap_boxes have x2 < x1 or y2 < y1")
    if overlap_sigmas is not None and overlap_sigmas.numel() and not bool((overlap_sigmas > 0).all()):
        raise ValueError(f"{name}: overlap_sigmas must be > 0")


def _deltas(b: Tensor, ref: Tensor) -> Tensor:
    """``(R, 4)`` deltas of boxes ``b (R, 4)`` relative to ``ref`` (``(4,)`` or ``(R, 4)``), the public code's
    encoding (top-left offsets over the reference size, log size ratios; sizes without ``+1``)."""
    x0, y0 = ref[..., 0], ref[..., 1]
    w, h = ref[..., 2] - x0, ref[..., 3] - y0
    return torch.stack([(b[:, 0] - x0) / w, (b[:, 1] - y0) / h,
                        torch.log((b[:, 2] - b[:, 0]) / w), torch.log((b[:, 3] - b[:, 1]) / h)], dim=1)


def _gauss(diff: Tensor, sigmas: Tensor | None, sigma: float, wide: torch.dtype) -> Tensor:
    """Gaussian weight of delta differences ``(R, 4)``: the public code's fixed ``sigma`` (squares summed left to
    right in the boxes' dtype, as its ``np.sum``, then the float64 ``exp``) or per-row ``sigmas (R, 4)``."""
    if sigmas is None:
        sq = diff * diff
        upper = ((sq[:, 0] + sq[:, 1]) + sq[:, 2]) + sq[:, 3]
        return torch.exp(-upper.to(wide) / (2.0 * sigma ** 2))
    z = diff.to(wide) / sigmas.to(wide)
    return torch.exp(-0.5 * (z * z).sum(dim=1))


def _touching_pairs(boxes: Tensor, idxs: Tensor | None) -> tuple[Tensor, Tensor]:
    """All ordered pairs ``(r, c)``, ``r != c``, of boxes of the same class whose intersection has ``iw > 0`` and
    ``ih > 0`` (the public code's test before it computes an IoU).

    A sweep over the boxes sorted by ``x1``: box ``a`` can only meet the boxes after it whose ``x1 < x2_a``, a
    contiguous range found by ``searchsorted``; work and memory grow with the pairs that overlap in x, not N^2.
    ``min(x2) - max(x1) > 0`` is the same as ``min(x2) > max(x1)`` for finite floats, hence the comparisons.
    """
    device = boxes.device
    valid = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).nonzero().squeeze(1)
    x1, order = boxes[valid, 0].sort(stable=True)
    ids = valid[order]  # original index of each sorted box
    hi = torch.searchsorted(x1, boxes[ids, 2].contiguous(), side="left")  # boxes with x1 < x2_a
    start = torch.arange(1, ids.numel() + 1, device=device)
    count = (hi - start).clamp_(min=0)
    a = torch.repeat_interleave(torch.arange(ids.numel(), device=device), count)
    b = start[a] + torch.arange(a.numel(), device=device) - torch.repeat_interleave(count.cumsum(0) - count, count)
    ra, rb = ids[a], ids[b]
    meet = (boxes[ra, 3] > boxes[rb, 1]) & (boxes[rb, 3] > boxes[ra, 1])
    if idxs is not None:
        meet &= idxs[ra] == idxs[rb]
    ra, rb = ra[meet], rb[meet]
    return torch.cat([ra, rb]), torch.cat([rb, ra])


def _noh_rounds(boxes: Tensor, scores: Tensor, overlap_boxes: Tensor, overlap_probs: Tensor,
                overlap_sigmas: Tensor | None, idxs: Tensor | None, iou_threshold: float, score_threshold: float,
                sigma: float, prob_threshold: float, flag_threshold: float,
                area_offset: float) -> tuple[Tensor, Tensor] | None:
    """NOH-NMS in rounds instead of one step per kept box.

    Two boxes *interact* when their IoU is ``> iou_threshold`` or when they intersect and one started below
    ``score_threshold`` (the only ways one can change the other: a box that started above the threshold and is
    still there is above it, so a weight of 1 leaves it alone). Every remaining box scored strictly above all the
    remaining boxes it interacts with is selected in this round: the sequential loop would select it before any of
    them and nothing left can change it. Its neighbours are then rescored together; the rest of the graph is
    independent of the order.

    Returns the kept mask ``(N,)`` and final scores ``(N,)``, or None when two interacting remaining boxes tie for
    their neighbourhood's maximum (only the public code's in-place order breaks that tie: the caller then runs
    :func:`_noh_sequential`). A box rescored by several boxes of one round gets the product of their float64
    weights rounded once, where the sequential loop rounds after each: scores can differ in the last bit.
    """
    n = boxes.shape[0]
    device = boxes.device
    wide = torch.float64 if device.type != "mps" else torch.float32
    r, c = _touching_pairs(boxes, idxs)
    area = (boxes[:, 2] - boxes[:, 0] + area_offset) * (boxes[:, 3] - boxes[:, 1] + area_offset)
    iw = torch.minimum(boxes[c, 2], boxes[r, 2]) - torch.maximum(boxes[c, 0], boxes[r, 0])
    ih = torch.minimum(boxes[c, 3], boxes[r, 3]) - torch.maximum(boxes[c, 1], boxes[r, 1])
    over = iw * ih / (area[c] + area[r] - ih * iw) > iou_threshold  # symmetric, bit for bit
    low = scores < score_threshold
    inter = (over | low[r] | low[c]).nonzero().squeeze(1)
    r, c, over = r[inter], c[inter], over[inter]
    br = boxes[r]
    sig = None if overlap_sigmas is None else overlap_sigmas[r]
    gauss = _gauss(_deltas(boxes[c], br) - _deltas(overlap_boxes[r], br), sig, sigma, wide)
    w_ease = torch.where(over, gauss, torch.ones_like(gauss))  # weight of c when r eases / when it does not
    w_hard = (~over).to(wide)
    flags = over & (gauss >= flag_threshold)
    ease_ok = overlap_probs > prob_threshold
    s = scores.clone()
    flagged = torch.zeros(n, dtype=torch.bool, device=device)
    kept = torch.zeros(n, dtype=torch.bool, device=device)
    left = torch.ones(n, dtype=torch.bool, device=device)  # neither selected nor dropped yet
    ones = torch.ones(n, dtype=wide, device=device)
    while True:
        nmax = torch.full_like(s, float("-inf")).scatter_reduce_(0, r, s[c], "amax")
        select = left & (s > nmax)
        if not bool(select.any()):
            return (kept, s) if not bool(left.any()) else None
        kept |= select
        left &= ~select
        p = select[r].nonzero().squeeze(1)  # pairs of this round's boxes with their remaining neighbours
        pr, pc = r[p], c[p]
        ease = (ease_ok & ~flagged)[pr]
        weight = torch.where(ease, w_ease[p], w_hard[p])
        s = (s.to(wide) * ones.scatter_reduce(0, pc, weight, "prod")).to(s.dtype)  # untouched: times 1, exact
        flagged[pc[ease & flags[p]]] = True
        touched = torch.zeros_like(left)
        touched[pc] = True
        left &= ~(touched & (s < score_threshold))
        live = (left[r] & left[c]).nonzero().squeeze(1)  # a pair with a finished end never matters again
        r, c, w_ease, w_hard, flags = r[live], c[live], w_ease[live], w_hard[live], flags[live]


def _noh_sequential(boxes: Tensor, scores: Tensor, overlap_boxes: Tensor, overlap_probs: Tensor,
                   overlap_sigmas: Tensor | None, iou_threshold: float, score_threshold: float, sigma: float,
                   prob_threshold: float, flag_threshold: float, area_offset: float) -> tuple[Tensor, Tensor]:
    """NOH-NMS on one class, step by step as the public code, its in-place order included (the reference, and the
    path for ties). Returns the kept indices in selection order and all ``N`` final scores."""
    n = boxes.shape[0]
    device = boxes.device
    wide = torch.float64 if device.type != "mps" else torch.float32  # the public code's weight is float64
    area = (boxes[:, 2] - boxes[:, 0] + area_offset) * (boxes[:, 3] - boxes[:, 1] + area_offset)
    s = scores.clone()
    flagged = torch.zeros(n, dtype=torch.bool, device=device)
    ease_ok = overlap_probs > prob_threshold
    order = torch.arange(n, device=device)  # the public code's in-place arrays, as indices into the inputs
    i = 0
    while i < n:
        # the first maximum in the current order moves to position i (its old occupant to the maximum's slot)
        j = i + int(s[order[i:n]].argmax())
        if j != i:
            order[[i, j]] = order[[j, i]]
        m = order[i]
        rest = order[i + 1:n]
        if rest.numel() == 0:
            break
        bm, b = boxes[m], boxes[rest]
        iw = torch.minimum(b[:, 2], bm[2]) - torch.maximum(b[:, 0], bm[0])
        ih = torch.minimum(b[:, 3], bm[3]) - torch.maximum(b[:, 1], bm[1])
        touched = (iw > 0) & (ih > 0)
        inter = iw * ih
        ov = inter / (area[rest] + area[m] - ih * iw)
        over = touched & (ov > iou_threshold)
        # the Gaussian weight of every box; only used where M eases (0-dim mask: no host sync)
        sig = None if overlap_sigmas is None else overlap_sigmas[m][None]
        gauss = _gauss(_deltas(b, bm) - _deltas(overlap_boxes[m][None], bm), sig, sigma, wide)
        ease = ease_ok[m] & ~flagged[m]
        weight = torch.where(over, torch.where(ease, gauss, torch.zeros_like(gauss)), torch.ones_like(gauss))
        flagged[rest] |= over & ease & (gauss >= flag_threshold)
        new = (weight * s[rest].to(wide)).to(s.dtype)
        s[rest] = new
        dropped = touched & (new < score_threshold)
        k = int(rest.numel() - dropped.sum())
        if k < rest.numel():
            # the public code fills a dropped slot with the last box and re-examines it: kept boxes at positions
            # >= k fill the holes below k, the last one the first hole
            pos = torch.arange(rest.numel(), device=device)
            holes = (dropped & (pos < k)).nonzero().squeeze(1)
            fillers = (~dropped & (pos >= k)).nonzero().squeeze(1).flip(0)
            order[i + 1 + holes] = rest[fillers]
            n = i + 1 + k
        i += 1
    return order[:n], s


def noh_nms(
    boxes: Tensor,
    scores: Tensor,
    overlap_boxes: Tensor,
    overlap_probs: Tensor,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.01,
    *,
    idxs: Tensor | None = None,
    overlap_sigmas: Tensor | None = None,
    sigma: float = 0.2,
    prob_threshold: float = 0.3,
    flag_threshold: float = 0.6,
    area_offset: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """NOH-NMS with the public code's semantics (module docstring); per class when ``idxs`` is given.

    Args:
        boxes: ``(N, 4)`` xyxy detections (pixels: the ``+1`` areas assume pixel units).
        scores: ``(N,)`` their scores.
        overlap_boxes: ``(N, 4)`` xyxy box of each detection's hallucinated nearest neighbour.
        overlap_probs: ``(N,)`` probability that the neighbour exists (the hallucinator's predicted IoU).
        iou_threshold: ``Nt``; a box with IoU ``> Nt`` with the selected box is suppressed or eased.
        score_threshold: a rescored box whose score falls ``<`` this is dropped (public code: ``thresh=0.01``).
        idxs: ``(N,)`` class of each box; boxes of different classes never interact. None: one class.
        overlap_sigmas: the paper's form, ``(N,)`` or ``(N, 4)`` predicted standard deviation of each box's
            hallucinated neighbour in delta space: the weight becomes ``exp(-sum_k (d_k - mu_k)^2 / (2 s_k^2))``
            with the selected box's ``s``. None: the public code's fixed ``sigma``.
        sigma: the fixed standard deviation (public code: 0.2).
        prob_threshold: the selected box eases only when its overlap probability is ``>`` this (public code: 0.3).
        flag_threshold: an eased box with weight ``>=`` this is flagged and will not ease (public code: 0.6).
        area_offset: added to each width and height for the IoU's areas (public code: 1; 0: ``torchvision``'s
            areas, so that with every overlap probability at 0 the result is ``torchvision.ops.nms``'s).

    Returns:
        ``keep (K,)`` int64 indices into the inputs sorted by final score, descending (equal scores: ascending index),
        and ``new_scores (K,)`` their final scores.
    """
    _check_inputs("noh_nms", boxes, scores, overlap_boxes, overlap_probs, overlap_sigmas, idxs)
    for key, value in (("iou_threshold", iou_threshold), ("score_threshold", score_threshold), ("sigma", sigma),
                       ("prob_threshold", prob_threshold), ("flag_threshold", flag_threshold),
                       ("area_offset", area_offset)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"noh_nms: {key} must be a number, got {value!r}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"noh_nms: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    if not float(sigma) > 0:
        raise ValueError(f"noh_nms: sigma must be > 0, got {sigma!r}")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), scores.new_zeros(0)
    if overlap_sigmas is not None and overlap_sigmas.ndim == 1:
        overlap_sigmas = overlap_sigmas[:, None].expand(-1, 4)
    opts = (float(iou_threshold), float(score_threshold), float(sigma), float(prob_threshold), float(flag_threshold),
            float(area_offset))
    rounds = _noh_rounds(boxes, scores, overlap_boxes, overlap_probs, overlap_sigmas, idxs, *opts)
    if rounds is not None:
        kept, s = rounds
        keep = kept.nonzero().squeeze(1)
        final = s[keep]
    else:  # a tie only the public code's in-place order breaks: its step-by-step loop, class by class
        groups = [torch.arange(boxes.shape[0], device=boxes.device)] if idxs is None else \
            [(idxs == c).nonzero().squeeze(1) for c in idxs.unique()]
        keeps, finals = [], []
        for g in groups:
            sig = None if overlap_sigmas is None else overlap_sigmas[g]
            k, s = _noh_sequential(boxes[g], scores[g], overlap_boxes[g], overlap_probs[g], sig, *opts)
            keeps.append(g[k])
            finals.append(s[k])
        keep, final = torch.cat(keeps), torch.cat(finals)
        keep, order = keep.sort()
        final = final[order]
    final, order = final.sort(descending=True, stable=True)  # ties: ascending index
    keep = keep[order]
    return keep, final


def multiclass_noh_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    top_k: int | None = 200,
    max_det: int | None = 100,
    overlap_boxes: Tensor,
    overlap_probs: Tensor,
    overlap_sigmas: Tensor | None = None,
    drop_threshold: float = 0.01,
    sigma: float = 0.2,
    prob_threshold: float = 0.3,
    flag_threshold: float = 0.6,
    area_offset: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """NOH-NMS behind the ``forge.ops.nms`` family interface (registered as ``'noh'``).

    Candidates are the (box, class) pairs with score ``> score_threshold`` (the public detector's
    ``SCORE_THRESH_TEST`` 0.05; None: all), the ``top_k`` best per class, in box-major order as the public code's
    ``nonzero``; :func:`noh_nms` runs per class with ``drop_threshold`` as its in-loop threshold, so returned scores
    may lie below ``score_threshold`` (down to ``drop_threshold``) — unlike the other family members.

    Args:
        boxes: ``(N, 4)``; scores: ``(N, C)``; the family options as :func:`forge.ops.nms.fast_nms`.
        overlap_boxes: ``(N, 4)`` class-agnostic hallucinated neighbour boxes (per-call input, not an option).
        overlap_probs: ``(N,)`` or ``(N, C)`` overlap probabilities; overlap_sigmas: ``(N,)`` or ``(N, 4)`` or None.
        drop_threshold, sigma, prob_threshold, flag_threshold, area_offset: :func:`noh_nms`'s ``score_threshold``
            and options.

    Returns:
        ``keep (K,)`` box indices, ``labels (K,)``, ``scores (K,)`` final scores, sorted by score.
    """
    name = "multiclass_noh_nms"
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: boxes must be (N, 4), got {tuple(boxes.shape)}")
    n = boxes.shape[0]
    if scores.ndim != 2 or scores.shape[0] != n:
        raise ValueError(f"{name}: scores must be (N, C) with N={n}, got {tuple(scores.shape)}")
    if overlap_boxes.shape != (n, 4):
        raise ValueError(f"{name}: overlap_boxes must be (N, 4) with N={n}, got {tuple(overlap_boxes.shape)}")
    if overlap_probs.shape not in ((n,), tuple(scores.shape)):
        raise ValueError(f"{name}: overlap_probs must be (N,) or (N, C) = {tuple(scores.shape)}, "
                         f"got {tuple(overlap_probs.shape)}")
    if overlap_sigmas is not None and overlap_sigmas.shape not in ((n,), (n, 4)):
        raise ValueError(f"{name}: overlap_sigmas must be (N,) or (N, 4) with N={n}, got {tuple(overlap_sigmas.shape)}")
    for key, value in (("top_k", top_k), ("max_det", max_det)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: {key} must be a positive integer or None, got {value!r}")
    if score_threshold is not None and (isinstance(score_threshold, bool)
                                        or not isinstance(score_threshold, (int, float))):
        raise ValueError(f"{name}: score_threshold must be a number or None, got {score_threshold!r}")
    mask = torch.ones_like(scores, dtype=torch.bool) if score_threshold is None else scores > score_threshold
    box_idx, labels = mask.nonzero(as_tuple=True)  # box-major, as the public code's filter_inds
    cand = scores[box_idx, labels]
    if top_k is not None and cand.numel():
        order = cand.argsort(descending=True, stable=True)
        order = order[labels[order].argsort(stable=True)]
        lab = labels[order]
        rank = torch.arange(lab.numel(), device=lab.device) - torch.searchsorted(lab, lab)
        sel = order[rank < top_k].sort().values  # back to box-major order
        box_idx, labels, cand = box_idx[sel], labels[sel], cand[sel]
    probs = overlap_probs[box_idx] if overlap_probs.ndim == 1 else overlap_probs[box_idx, labels]
    sig = None if overlap_sigmas is None else overlap_sigmas[box_idx]
    keep, final = noh_nms(boxes[box_idx], cand, overlap_boxes[box_idx], probs, iou_threshold, drop_threshold,
                          idxs=labels if scores.shape[1] > 1 else None, overlap_sigmas=sig, sigma=sigma,
                          prob_threshold=prob_threshold, flag_threshold=flag_threshold, area_offset=area_offset)
    if max_det is not None:
        keep, final = keep[:max_det], final[:max_det]
    return box_idx[keep], labels[keep], final


multiclass_noh_nms.extra_inputs = EXTRA_INPUTS  # per-call inputs beyond (boxes, scores); see forge.ops.nms
