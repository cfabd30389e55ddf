"""Non-maximum suppression family: Fast NMS (per class and class-agnostic) and standard greedy NMS.

Every function takes boxes ``(N, 4)`` in ``xyxy`` (any consistent unit: pixels or relative) and a score matrix
``(N, C)`` of per-class confidences (background excluded), and returns
``(keep, labels, scores)``: indices into the N candidates, their class indices ``0..C-1`` and the kept scores,
sorted by decreasing score. The caller gathers whatever else travels with a box (mask coefficients, embeddings).

* :func:`fast_nms` — "Fast NMS" (Bolya et al., *YOLACT: Real-time Instance Segmentation*, ICCV 2019, Sec. 3.5):
  per class, the ``top_k`` best boxes, one batched IoU matrix ``(C, k, k)``, its strict upper triangle, and a box
  survives when its largest IoU with any **higher-scored** box of its class is ``<= iou_threshold``. Unlike greedy
  NMS an already suppressed box may still suppress others, which is what makes it a few matrix operations.
* :func:`cc_fast_nms` — the same on the best class of each box (class-agnostic).
* :func:`standard_nms` — greedy NMS per class through :func:`torchvision.ops.batched_nms`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ["pairwise_iou", "fast_nms", "cc_fast_nms", "standard_nms"]


def pairwise_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every pair, batched over leading dimensions.

    Args:
        boxes_a: ``(..., N, 4)`` xyxy.
        boxes_b: ``(..., M, 4)`` xyxy.

    Returns:
        ``(..., N, M)`` IoU (area ``(x2 - x1) * (y2 - y1)``, no ``+1``).
    """
    ax1, ay1, ax2, ay2 = boxes_a.unbind(-1)
    bx1, by1, bx2, by2 = boxes_b.unbind(-1)
    # per-coordinate (..., N, M) temporaries, updated in place: ~1.6x faster than (..., N, M, 2) ones on CPU
    w = (torch.minimum(ax2[..., :, None], bx2[..., None, :]) - torch.maximum(ax1[..., :, None], bx1[..., None, :]))
    h = (torch.minimum(ay2[..., :, None], by2[..., None, :]) - torch.maximum(ay1[..., :, None], by1[..., None, :]))
    inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
    area_a = ((ax2 - ax1) * (ay2 - ay1))[..., :, None]
    area_b = ((bx2 - bx1) * (by2 - by1))[..., None, :]
    return inter / (area_a + area_b - inter)


def _check(boxes: Tensor, scores: Tensor) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"nms: boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"nms: scores must be (N, C) with N={boxes.shape[0]}, got {tuple(scores.shape)}")


def _empty(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    z = torch.zeros(0, dtype=torch.long, device=device)
    return z, z.clone(), torch.zeros(0, device=device)


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_det: int | None = 100,
    score_threshold: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class Fast NMS (YOLACT Sec. 3.5).

    Args:
        boxes: ``(N, 4)`` xyxy candidates.
        scores: ``(N, C)`` class scores of each candidate.
        iou_threshold: a box is kept when its max IoU with a higher-scored box of the same class is ``<=`` this.
        top_k: candidates considered per class (the ``top_k`` highest scores of that class).
        max_det: detections kept over all classes after sorting by score (None keeps all).
        score_threshold: optional threshold applied to the kept scores (the published method applies none:
            every class keeps its ``top_k`` candidates whatever their score).

    Returns:
        ``keep (K,)`` candidate indices, ``labels (K,)`` class indices, ``scores (K,)``, sorted by score.
    """
    _check(boxes, scores)
    n, num_classes = scores.shape
    if n == 0 or num_classes == 0:
        return _empty(boxes.device)
    cls_scores, idx = scores.t().sort(dim=1, descending=True)  # (C, N)
    idx = idx[:, :top_k].contiguous()
    cls_scores = cls_scores[:, :top_k]
    k = idx.shape[1]
    cls_boxes = boxes[idx.reshape(-1)].reshape(num_classes, k, 4)
    iou = pairwise_iou(cls_boxes, cls_boxes).triu_(diagonal=1)  # (C, k, k); row i < column j: i scores higher
    iou_max = iou.max(dim=1).values  # max IoU of each box with a higher-scored one
    keep = iou_max <= iou_threshold
    if score_threshold is not None:
        keep &= cls_scores > score_threshold
    labels = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)[keep]
    kept_idx = idx[keep]
    kept_scores, order = cls_scores[keep].sort(descending=True)
    if max_det is not None:
        order, kept_scores = order[:max_det], kept_scores[:max_det]
    return kept_idx[order], labels[order], kept_scores


def cc_fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_det: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Class-agnostic Fast NMS: each box competes with every higher-scored box under its best class.

    Args and returns as :func:`fast_nms`; the label of a box is its best class.
    """
    _check(boxes, scores)
    if boxes.shape[0] == 0 or scores.shape[1] == 0:
        return _empty(boxes.device)
    best, labels = scores.max(dim=1)
    best_sorted, idx = best.sort(descending=True)
    idx, best_sorted = idx[:top_k], best_sorted[:top_k]
    b = boxes[idx]
    iou_max = pairwise_iou(b, b).triu_(diagonal=1).max(dim=0).values
    keep = iou_max <= iou_threshold
    idx, best_sorted = idx[keep], best_sorted[keep]
    if max_det is not None:
        idx, best_sorted = idx[:max_det], best_sorted[:max_det]
    return idx, labels[idx], best_sorted


def standard_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
    max_det: int | None = 100,
    top_k: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy per-class NMS (``torchvision.ops.batched_nms``) on every (box, class) pair above a score threshold.

    torchvision suppresses IoU ``> iou_threshold`` and computes areas without the ``+1`` of some legacy
    (Cython / Caffe) implementations.

    Args:
        boxes: ``(N, 4)`` xyxy.
        scores: ``(N, C)``.
        iou_threshold: IoU above which a lower-scored box of the same class is removed.
        score_threshold: (box, class) pairs with a score ``<=`` this are dropped first.
        max_det: detections kept over all classes (None keeps all).
        top_k: optional cap on candidates per class before NMS.

    Returns:
        As :func:`fast_nms`.
    """
    _check(boxes, scores)
    box_idx, labels = (scores > score_threshold).nonzero(as_tuple=True)
    if box_idx.numel() == 0:
        return _empty(boxes.device)
    cand_scores = scores[box_idx, labels]
    if top_k is not None:
        # rank inside each class: sort by score, then stable sort by class keeps the score order per class
        order = cand_scores.argsort(descending=True)
        order = order[labels[order].argsort(stable=True)]
        lab = labels[order]
        start = torch.searchsorted(lab, lab, right=False)
        rank = torch.arange(lab.numel(), device=lab.device) - start
        sel = order[rank < top_k]
        box_idx, labels, cand_scores = box_idx[sel], labels[sel], cand_scores[sel]
    keep = batched_nms(boxes[box_idx].float(), cand_scores.float(), labels, iou_threshold)  # sorted by score
    if max_det is not None:
        keep = keep[:max_det]
    return box_idx[keep], labels[keep], cand_scores[keep]
