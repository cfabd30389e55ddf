"""Non-maximum suppression family, selectable by name: Fast NMS (per class and class-agnostic), standard greedy NMS
and Soft-NMS.

Every function has the signature ``fn(boxes, scores, *, iou_threshold=0.5, score_threshold=None, top_k=200,
max_det=100, ...)``: boxes ``(N, 4)`` in ``xyxy`` (any consistent unit: pixels or relative), a score matrix
``(N, C)`` of per-class confidences (background excluded), the same keyword-only options with the same order and
defaults (a function's own options come after them), and the same result ``(keep, labels, scores)``: indices into
the N candidates, their class indices ``0..C-1`` and their scores, sorted by decreasing score. The caller gathers
whatever else travels with a box (mask coefficients, embeddings).

Common options:

* ``iou_threshold``: a box is suppressed by a higher-scored box of its class whose IoU with it is ``> iou_threshold``
  (kept when ``<=``, as ``torchvision.ops.nms``).
* ``score_threshold``: (box, class) pairs whose (final) score is ``<= score_threshold`` are not returned; None
  returns every pair. Filtering before or after suppression gives the same result, since a box only ever
  suppresses (or decays) lower-scored ones.
* ``top_k``: candidates considered per class, the ``top_k`` highest scores of that class (per best class for
  :func:`cc_fast_nms`); None considers all (Fast NMS then builds ``C x N x N`` IoU matrices).
* ``max_det``: detections returned over all classes after sorting by score; None returns all.

Functions (``docs/ops.md`` has the table):

* :func:`fast_nms` — "Fast NMS" (Bolya et al., *YOLACT: Real-time Instance Segmentation*, ICCV 2019, Sec. 3.5):
  per class, one batched IoU matrix ``(C, k, k)``, its strict upper triangle, and a box survives when its largest
  IoU with any **higher-scored** box of its class is ``<= iou_threshold``. Unlike greedy NMS an already suppressed
  box may still suppress others, which is what makes it a few matrix operations.
* :func:`cc_fast_nms` — the same on the best class of each box (class-agnostic).
* :func:`standard_nms` — greedy NMS per class through :func:`torchvision.ops.batched_nms`.
* :func:`soft_nms` — Soft-NMS (Bodla et al., *Soft-NMS — Improving Object Detection With One Line of Code*,
  ICCV 2017): greedy, but overlapping boxes have their score decayed instead of being removed.
* :func:`multiclass_noh_nms` (``'noh'``) — NOH-NMS (Zhou et al., ACM MM 2020; :mod:`forge.ops.noh_nms`, whose
  :func:`noh_nms` is the single-list form). It needs per-box predictions beyond boxes and scores, passed per call
  as keyword arguments (``overlap_boxes``, ``overlap_probs``, optionally ``overlap_sigmas``), so it is registered
  in :data:`NMS_FUNCTIONS_WITH_INPUTS`, not :data:`NMS_FUNCTIONS` (which any detector can use):
  :func:`get_nms` and :func:`build_nms` find both, and :func:`nms_extra_inputs` names what a chosen function
  takes. A detector that can supply them switches with one override::

      nms = build_nms(**cfg.nms)                      # nms: {name: noh} or {name: standard}
      extra = {k: pred[k] for k in nms_extra_inputs(nms) if k in pred}
      keep, labels, scores = nms(boxes, scores, **extra)

Zero-area boxes have IoU 0 with everything (:func:`forge.ops.boxes.box_iou`), so they never suppress nor get
suppressed, as in ``torchvision.ops.nms``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from forge.ops.boxes import box_iou
from forge.ops.noh_nms import multiclass_noh_nms, noh_nms

__all__ = ["NMS_FUNCTIONS", "NMS_FUNCTIONS_WITH_INPUTS", "build_nms", "cc_fast_nms", "fast_nms", "get_nms",
           "multiclass_noh_nms", "nms_extra_inputs", "noh_nms", "soft_nms", "standard_nms"]

NmsResult = tuple[Tensor, Tensor, Tensor]
SOFT_METHODS = ("gaussian", "linear", "hard")


def _check(name: str, boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float | None,
           top_k: int | None, max_det: int | None) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{name}: scores must be (N, C) with N={boxes.shape[0]}, got {tuple(scores.shape)}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"{name}: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    if score_threshold is not None and not isinstance(score_threshold, (int, float)):
        raise ValueError(f"{name}: score_threshold must be a number or None, got {score_threshold!r}")
    for key, value in (("top_k", top_k), ("max_det", max_det)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: {key} must be a positive integer or None, got {value!r}")


def _empty(device: torch.device) -> NmsResult:
    z = torch.zeros(0, dtype=torch.long, device=device)
    return z, z.clone(), torch.zeros(0, device=device)


def _per_class_top_k(boxes: Tensor, scores: Tensor, top_k: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """``idx (C, k)`` candidate indices per class by decreasing score, their scores ``(C, k)`` and boxes
    ``(C, k, 4)``."""
    cls_scores, idx = scores.t().sort(dim=1, descending=True)  # (C, N)
    if top_k is not None:
        idx, cls_scores = idx[:, :top_k], cls_scores[:, :top_k]
    idx = idx.contiguous()
    return idx, cls_scores, boxes[idx.reshape(-1)].reshape(*idx.shape, 4)


def _gather_kept(keep: Tensor, idx: Tensor, cls_scores: Tensor, max_det: int | None) -> NmsResult:
    """``keep (C, k)`` mask over ``idx``/``cls_scores`` -> (keep, labels, scores) sorted by score."""
    labels = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]
    kept_idx = idx[keep]
    kept_scores, order = cls_scores[keep].sort(descending=True)
    if max_det is not None:
        order, kept_scores = order[:max_det], kept_scores[:max_det]
    return kept_idx[order], labels[order], kept_scores


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    top_k: int | None = 200,
    max_det: int | None = 100,
) -> NmsResult:
    """Per-class Fast NMS (YOLACT Sec. 3.5; ``score_threshold=None`` is the published setting: every class keeps
    its ``top_k`` candidates whatever their score).

    Args:
        boxes: ``(N, 4)`` xyxy candidates.
        scores: ``(N, C)`` class scores of each candidate.
        iou_threshold, score_threshold, top_k, max_det: the family's options (module docstring).

    Returns:
        ``keep (K,)`` candidate indices, ``labels (K,)`` class indices, ``scores (K,)``, sorted by score.
    """
    _check("fast_nms", boxes, scores, iou_threshold, score_threshold, top_k, max_det)
    if boxes.shape[0] == 0 or scores.shape[1] == 0:
        return _empty(boxes.device)
    idx, cls_scores, cls_boxes = _per_class_top_k(boxes, scores, top_k)
    iou = box_iou(cls_boxes, cls_boxes).triu_(diagonal=1)  # (C, k, k); row i < column j: i scores higher
    keep = iou.max(dim=1).values <= iou_threshold  # max IoU of each box with a higher-scored one
    if score_threshold is not None:
        keep &= cls_scores > score_threshold
    return _gather_kept(keep, idx, cls_scores, max_det)


def cc_fast_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    top_k: int | None = 200,
    max_det: int | None = 100,
) -> NmsResult:
    """Class-agnostic Fast NMS: each box competes, under its best class, with every higher-scored box.

    ``top_k`` counts boxes (by best score), not boxes per class. Args and returns as :func:`fast_nms`; the label of
    a box is its best class.
    """
    _check("cc_fast_nms", boxes, scores, iou_threshold, score_threshold, top_k, max_det)
    if boxes.shape[0] == 0 or scores.shape[1] == 0:
        return _empty(boxes.device)
    best, labels = scores.max(dim=1)
    best_sorted, idx = best.sort(descending=True)
    if top_k is not None:
        idx, best_sorted = idx[:top_k], best_sorted[:top_k]
    b = boxes[idx]
    keep = box_iou(b, b).triu_(diagonal=1).max(dim=0).values <= iou_threshold
    if score_threshold is not None:
        keep &= best_sorted > score_threshold
    idx, best_sorted = idx[keep], best_sorted[keep]
    if max_det is not None:
        idx, best_sorted = idx[:max_det], best_sorted[:max_det]
    return idx, labels[idx], best_sorted


def standard_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    top_k: int | None = 200,
    max_det: int | None = 100,
) -> NmsResult:
    """Greedy per-class NMS (``torchvision.ops.batched_nms``) on every (box, class) pair.

    torchvision suppresses IoU ``> iou_threshold`` and computes areas without the ``+1`` of some legacy
    (Cython / Caffe) implementations. Args and returns as :func:`fast_nms`.
    """
    _check("standard_nms", boxes, scores, iou_threshold, score_threshold, top_k, max_det)
    if score_threshold is None:
        box_idx, labels = torch.ones_like(scores, dtype=torch.bool).nonzero(as_tuple=True)
    else:
        box_idx, labels = (scores > score_threshold).nonzero(as_tuple=True)
    if box_idx.numel() == 0:
        return _empty(boxes.device)
    cand_scores = scores[box_idx, labels]
    if top_k is not None:
        # rank inside each class: sort by score, then a stable sort by class keeps the score order per class
        order = cand_scores.argsort(descending=True)
        order = order[labels[order].argsort(stable=True)]
        lab = labels[order]
        rank = torch.arange(lab.numel(), device=lab.device) - torch.searchsorted(lab, lab, right=False)
        sel = order[rank < top_k]
        box_idx, labels, cand_scores = box_idx[sel], labels[sel], cand_scores[sel]
    keep = batched_nms(boxes[box_idx].float(), cand_scores.float(), labels, iou_threshold)  # sorted by score
    if max_det is not None:
        keep = keep[:max_det]
    return box_idx[keep], labels[keep], cand_scores[keep]


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    top_k: int | None = 200,
    max_det: int | None = 100,
    method: str = "gaussian",
    sigma: float = 0.5,
) -> NmsResult:
    """Per-class Soft-NMS (Bodla et al. 2017): repeatedly take the highest-scored remaining box of a class and
    multiply the score of every other remaining box of that class by a weight of their IoU ``o``.

    Methods: ``'gaussian'`` ``exp(-o**2 / sigma)`` (``iou_threshold`` unused), ``'linear'`` ``1 - o`` where
    ``o > iou_threshold`` (1 elsewhere), ``'hard'`` 0 where ``o > iou_threshold``: greedy NMS, for comparison
    (with ``score_threshold=0`` it returns what :func:`standard_nms` returns). ``score_threshold`` drops a box as
    soon as its decayed score falls to it or below; without one nothing is dropped and Soft-NMS only re-ranks.
    All classes advance together: ``top_k`` steps of ``(C, top_k)`` operations on one ``(C, k, k)`` IoU matrix.

    Args and returns as :func:`fast_nms`, the returned scores being the decayed ones.
    """
    _check("soft_nms", boxes, scores, iou_threshold, score_threshold, top_k, max_det)
    if method not in SOFT_METHODS:
        raise ValueError(f"soft_nms: method must be one of {SOFT_METHODS}, got {method!r}")
    if not float(sigma) > 0:
        raise ValueError(f"soft_nms: sigma must be > 0, got {sigma!r}")
    if boxes.shape[0] == 0 or scores.shape[1] == 0:
        return _empty(boxes.device)
    idx, cls_scores, cls_boxes = _per_class_top_k(boxes, scores, top_k)
    iou = box_iou(cls_boxes, cls_boxes)  # (C, k, k)
    s = cls_scores.clone()
    active = s > score_threshold if score_threshold is not None else torch.ones_like(s, dtype=torch.bool)
    kept = torch.zeros_like(active)
    rows = torch.arange(s.shape[0], device=s.device)
    for _ in range(s.shape[1]):
        best = s.masked_fill(~active, float("-inf")).argmax(dim=1)  # (C,) highest remaining box of each class
        live = active[rows, best]  # classes that still have a box
        if not bool(live.any()):
            break
        kept[rows[live], best[live]] = True
        active[rows, best] = False
        o = iou[rows, best]  # (C, k) IoU of the selected box with the others of its class
        if method == "gaussian":
            weight = torch.exp(-(o * o) / sigma)
        elif method == "linear":
            weight = torch.where(o > iou_threshold, 1 - o, torch.ones_like(o))
        else:
            weight = (o <= iou_threshold).to(s.dtype)
        decay = active & live[:, None]
        s = torch.where(decay, s * weight, s)
        if score_threshold is not None:
            active &= s > score_threshold
    return _gather_kept(kept, idx, s, max_det)


NMS_FUNCTIONS: dict[str, Callable[..., NmsResult]] = {
    "fast": fast_nms,
    "cc_fast": cc_fast_nms,
    "standard": standard_nms,
    "soft": soft_nms,
}


# NMS that need per-box predictions besides boxes and scores; each function's ``extra_inputs`` maps the keyword
# names of those per-call inputs to their per-box trailing shape (``(N, *shape)``)
NMS_FUNCTIONS_WITH_INPUTS: dict[str, Callable[..., NmsResult]] = {
    "noh": multiclass_noh_nms,
}


def get_nms(name: str) -> Callable[..., NmsResult]:
    """The NMS function registered under ``name`` (``'fast' | 'cc_fast' | 'standard' | 'soft' | 'noh'``)."""
    try:
        return NMS_FUNCTIONS[name] if name in NMS_FUNCTIONS else NMS_FUNCTIONS_WITH_INPUTS[name]
    except (KeyError, TypeError):
        known = sorted([*NMS_FUNCTIONS, *NMS_FUNCTIONS_WITH_INPUTS])
        raise ValueError(f"unknown NMS {name!r}: expected one of {known}") from None


def nms_extra_inputs(fn: Callable[..., NmsResult]) -> tuple[str, ...]:
    """The per-call keyword inputs (beyond ``boxes, scores``) of an NMS function or of a :func:`build_nms` result:
    ``()`` for the :data:`NMS_FUNCTIONS`, ``('overlap_boxes', 'overlap_probs', 'overlap_sigmas')`` for ``'noh'``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return tuple(getattr(fn, "extra_inputs", {}))


def build_nms(name: str, **options: object) -> Callable[[Tensor, Tensor], NmsResult]:
    """``get_nms(name)`` with ``options`` bound, checked now rather than at the first image.

    For configs: ``nms: {name: standard, iou_threshold: 0.6}`` -> ``build_nms(**cfg.nms)``; an override such as
    ``model.nms.name=soft`` then switches the method. Unknown option names raise a ``ValueError`` naming them.
    The per-call inputs of :data:`NMS_FUNCTIONS_WITH_INPUTS` (:func:`nms_extra_inputs`) are not options: they
    are passed to the returned function with each image's boxes and scores.
    """
    fn = get_nms(name)
    inputs = getattr(fn, "extra_inputs", {})  # per-call predictions, not options
    allowed = [p.name for p in inspect.signature(fn).parameters.values()
               if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in inputs]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"NMS {name!r} ({fn.__name__}) has no option(s) {unknown}: expected some of {allowed}")
    bound = functools.partial(fn, **options)
    empty = {key: torch.zeros((0, *shape)) for key, shape in inputs.items()}
    bound(torch.zeros((0, 4)), torch.zeros((0, 1)), **empty)  # validates the option values
    return bound
