"""Anchor-to-ground-truth assignment (YOLACT Sec. 4 / SSD matching with the original's details).

1. IoU of every GT box with every anchor (anchors in corner form).
2. Each anchor takes its best GT; IoU ``>= pos_iou`` -> positive, ``< neg_iou`` -> background, between -> neutral.
3. Forced matches: repeatedly pick the (GT, anchor) pair with the highest remaining IoU, give that anchor to that
   GT as a positive whatever the IoU, and remove both; every GT gets one anchor, best-matched GT first.
4. Crowd rule: an anchor that is not positive and whose intersection with a crowd box covers more than
   ``crowd_iou`` of the *anchor's* area is neutral (no loss), so crowds are not taught as background.
"""

from __future__ import annotations

from torch import Tensor

from forge.ops.boxes import box_cxcywh_to_xyxy, box_ioa, box_iou


def match_anchors(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    anchors: Tensor,
    crowd_boxes: Tensor | None = None,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    crowd_iou: float = 0.7,
) -> tuple[Tensor, Tensor]:
    """Assign ground truth to anchors.

    Args:
        gt_boxes: ``(N, 4)`` relative xyxy, non-crowd objects only (``N >= 1``).
        gt_labels: ``(N,)`` contiguous labels ``0..C-1``.
        anchors: ``(A, 4)`` cxcywh.
        crowd_boxes: ``(M, 4)`` relative xyxy crowd regions, or None.
        pos_iou, neg_iou, crowd_iou: thresholds (0.5 / 0.4 / 0.7 for YOLACT; ``crowd_iou >= 1`` disables the rule).

    Returns:
        ``conf_t (A,)`` int64: ``label + 1`` for positives, 0 background, -1 neutral;
        ``gt_idx (A,)`` int64: index of the GT each anchor is associated with (meaningful for positives).
    """
    if gt_boxes.shape[0] == 0:
        raise ValueError("match_anchors: needs at least one ground-truth box")
    anchor_boxes = box_cxcywh_to_xyxy(anchors)
    overlaps = box_iou(gt_boxes, anchor_boxes)  # (N, A); 0 (not NaN) for degenerate pairs
    best_overlap, gt_idx = overlaps.max(0)
    for _ in range(overlaps.shape[0]):
        best_per_gt, best_anchor = overlaps.max(1)
        j = best_per_gt.argmax()
        i = best_anchor[j]
        overlaps[:, i] = -1
        overlaps[j, :] = -1
        best_overlap[i] = 2.0
        gt_idx[i] = j
    conf_t = gt_labels[gt_idx] + 1
    conf_t[best_overlap < pos_iou] = -1
    conf_t[best_overlap < neg_iou] = 0
    if crowd_boxes is not None and crowd_boxes.shape[0] > 0 and crowd_iou < 1:
        crowd_cover = box_ioa(anchor_boxes, crowd_boxes).max(1).values  # share of each anchor inside a crowd
        conf_t[(conf_t <= 0) & (crowd_cover > crowd_iou)] = -1
    return conf_t, gt_idx
