"""Training targets of the NOH-NMS detector: proposal / anchor labels with CrowdHuman ignore regions, and the
Nearby Objects Hallucinator's target (the ground truth with the second-highest IoU).

Pure tensor functions on one image, so they can be checked on hand-built crowds (``tests/nohnms/test_targets.py``).
Label convention (as torchvision's samplers): ``1`` positive, ``0`` negative, ``-1`` neither (not sampled).
"""

from __future__ import annotations

import torch
from torch import Tensor

from forge.ops.boxes import box_ioa, box_iou

__all__ = ["label_anchors_with_ignore", "label_proposals", "nearest_neighbour_targets"]


def label_proposals(
    proposals: Tensor, gt_boxes: Tensor, ignore_boxes: Tensor, fg_iou: float = 0.5, bg_iou: float = 0.5,
    ignore_ioa: float | None = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Match second-stage proposals to ground truth, with ignore regions matched by IoA.

    The public code's rule (its ``MatcherIgnore`` with ``ROI_HEADS.IGNORE_IOA``): a proposal is positive when its best
    IoU with a person is ``>= fg_iou``; otherwise, when its IoA (intersection over the **proposal's** area) with an
    ignore region is larger than that best IoU and ``>= ignore_ioa``, it is neither positive nor negative; else it
    is negative when its best IoU is ``< bg_iou`` (and neither in between). ``ignore_ioa=None`` treats ignore
    regions as absent (they are never matched by IoU either).

    Args:
        proposals: ``(N, 4)`` xyxy.
        gt_boxes: ``(M, 4)`` xyxy persons (ignore regions excluded).
        ignore_boxes: ``(K, 4)`` xyxy ignore regions.

    Returns:
        ``matched (N,)`` index of each proposal's best person (0 when ``M == 0``), ``labels (N,)`` int64 in
        ``{1, 0, -1}``, ``iou (M, N)`` the IoU matrix (persons x proposals), reused by
        :func:`nearest_neighbour_targets`.
    """
    n = proposals.shape[0]
    iou = box_iou(gt_boxes, proposals)  # (M, N)
    if gt_boxes.shape[0]:
        best, matched = iou.max(dim=0)
    else:
        best = proposals.new_zeros(n)
        matched = torch.zeros(n, dtype=torch.long, device=proposals.device)
    labels = torch.full((n,), -1, dtype=torch.long, device=proposals.device)
    labels[best < bg_iou] = 0
    positive = best >= fg_iou
    labels[positive] = 1
    if ignore_ioa is not None and ignore_boxes.shape[0]:
        ioa = box_ioa(proposals, ignore_boxes).max(dim=1).values  # (N,) how much of each proposal is ignored
        labels[~positive & (ioa > best) & (ioa >= ignore_ioa)] = -1
    return matched, labels, iou


def label_anchors_with_ignore(labels: Tensor, anchors: Tensor, ignore_boxes: Tensor, ignore_ioa: float) -> Tensor:
    """RPN labels with anchors lying in ignore regions removed: every non-positive anchor whose IoA with an ignore
    region is ``> ignore_ioa`` becomes ``-1`` (the public code's ``RPN.IGNORE_IOA`` rule).

    Args:
        labels: ``(A,)`` float labels ``1 / 0 / -1`` from the anchor matcher.
        anchors: ``(A, 4)`` xyxy.
        ignore_boxes: ``(K, 4)`` xyxy.

    Returns:
        a new ``(A,)`` label tensor.
    """
    if ignore_boxes.shape[0] == 0:
        return labels
    ioa = box_ioa(anchors, ignore_boxes).max(dim=1).values
    out = labels.clone()
    out[(labels != 1) & (ioa > ignore_ioa)] = -1.0
    return out


def nearest_neighbour_targets(iou: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """The hallucinator's target for every proposal: the person with the **second-highest** IoU (the highest is the
    one the proposal regresses to) and that IoU (NOH-NMS, Sec. 3.2; the public code sorts the IoU column).

    With fewer than two persons the overlap IoU is 0 (no neighbour) and the box is the best person's (or zeros with
    none): below every threshold, so it is never regressed.

    Args:
        iou: ``(M, N)`` IoU of persons x proposals.
        gt_boxes: ``(M, 4)``.

    Returns:
        ``overlap_iou (N,)``, ``overlap_boxes (N, 4)``.
    """
    m, n = iou.shape
    if m < 2:
        boxes = gt_boxes[iou.argmax(dim=0)] if m == 1 else iou.new_zeros((n, 4))
        return iou.new_zeros(n), boxes
    vals, idx = iou.topk(2, dim=0)  # (2, N), descending
    return vals[1], gt_boxes[idx[1]]
