"""Test-time post-processing (YOLACT Sec. 3.5 and the original ``Detect`` / ``postprocess``).

1. Softmax class scores; drop anchors whose best foreground score is ``<= conf_thresh`` (0.05).
2. Decode boxes; NMS: Fast NMS per class (default: top 200 per class, IoU 0.5, keep 100 over all classes, no
   post-NMS score threshold), class-agnostic Fast NMS, or standard greedy NMS (``forge.ops.nms``).
3. Masks: ``sigmoid(P c)`` at prototype resolution, cropped to the predicted box (1 cell padding),
   (YOLACT++: mask score = class score x predicted mask IoU from the re-scoring net), bilinearly upsampled and
   thresholded at 0.5.
4. Boxes and masks mapped from the network input to the original image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forge.data.structures import Detections, ImageMeta
from forge.ops.nms import cc_fast_nms, fast_nms, standard_nms

from .assembly import assemble_masks, crop_masks
from .box_coding import decode

NMS_KINDS = ("fast", "cc_fast", "standard")


def detect_single(
    deltas: Tensor,
    probs: Tensor,
    coefs: Tensor,
    anchors: Tensor,
    conf_thresh: float = 0.05,
    nms: str = "fast",
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_det: int = 100,
) -> dict[str, Tensor]:
    """Candidates -> detections of one image.

    Args:
        deltas: ``(A, 4)`` box deltas; probs: ``(A, C + 1)`` softmax scores (background 0);
        coefs: ``(A, k)``; anchors: ``(A, 4)`` cxcywh.

    Returns:
        ``boxes (n, 4)`` relative xyxy, ``labels (n,)`` 0-based, ``scores (n,)``, ``coefs (n, k)``, sorted by score.
    """
    if nms not in NMS_KINDS:
        raise ValueError(f"detect_single: nms must be one of {NMS_KINDS}, got {nms!r}")
    fg = probs[:, 1:]
    keep = fg.max(1).values > conf_thresh
    boxes = decode(deltas[keep], anchors[keep])
    fg, coefs = fg[keep], coefs[keep]
    if nms == "fast":
        idx, labels, scores = fast_nms(boxes, fg, iou_threshold, top_k, max_det)
    elif nms == "cc_fast":
        idx, labels, scores = cc_fast_nms(boxes, fg, iou_threshold, top_k, max_det)
    else:
        idx, labels, scores = standard_nms(boxes, fg, iou_threshold, conf_thresh, max_det)
    return {"boxes": boxes[idx], "labels": labels, "scores": scores, "coefs": coefs[idx]}


def to_original(
    det: dict[str, Tensor],
    prototypes: Tensor,
    meta: ImageMeta,
    input_size: tuple[int, int],
    maskiou_net: nn.Module | None = None,
    crop: bool = True,
    mask_threshold: float = 0.5,
    truncate_boxes: bool = False,
) -> Detections:
    """Assemble masks and map one image's detections to the original image.

    Args:
        det: output of :func:`detect_single`.
        prototypes: ``(k, h, w)``.
        meta: ``ori_shape``, ``img_shape`` (resized, before padding), ``scale_factor`` ``(sx, sy)``; padding is
            assumed at the bottom/right. Missing shapes (``(0, 0)``) default to the input size.
        input_size: ``(H, W)`` of the network input.
        maskiou_net: YOLACT++ re-scoring net, or None.
        crop: crop masks to their predicted box before upsampling.
        mask_threshold: binarisation threshold of the upsampled soft masks.
        truncate_boxes: cast box coordinates down to integers as the original evaluation does.

    Returns:
        :class:`Detections` with boxes in original pixels, bool masks ``(n, H0, W0)`` and, with ``maskiou_net``,
        ``mask_scores``.
    """
    ih, iw = input_size
    oh, ow = meta.ori_shape if meta.ori_shape[0] > 0 else (ih, iw)
    sx, sy = meta.scale_factor
    boxes_rel = det["boxes"]
    n = boxes_rel.shape[0]
    masks = assemble_masks(prototypes, det["coefs"])
    if crop:
        masks = crop_masks(masks, boxes_rel, padding=1)
    mask_scores = None
    if maskiou_net is not None and n:
        iou = maskiou_net(masks[:, None])
        mask_scores = det["scores"] * iou.gather(1, det["labels"][:, None]).squeeze(1)
    # the whole (padded) input expressed at original scale; equals ori_shape when there is no padding
    canvas = (max(1, round(ih / sy)), max(1, round(iw / sx)))
    if n:
        up = F.interpolate(masks[None], canvas, mode="bilinear", align_corners=False)[0]
        bitmaps = up[:, :oh, :ow] > mask_threshold
        if bitmaps.shape[1:] != (oh, ow):  # canvas smaller than the original after rounding: pad
            bitmaps = F.pad(bitmaps, (0, ow - bitmaps.shape[2], 0, oh - bitmaps.shape[1]))
    else:
        bitmaps = torch.zeros((0, oh, ow), dtype=torch.bool, device=prototypes.device)
    # relative -> input pixels -> original pixels; order and clamp as the original
    x1 = torch.minimum(boxes_rel[:, 0], boxes_rel[:, 2]) * iw / sx
    x2 = torch.maximum(boxes_rel[:, 0], boxes_rel[:, 2]) * iw / sx
    y1 = torch.minimum(boxes_rel[:, 1], boxes_rel[:, 3]) * ih / sy
    y2 = torch.maximum(boxes_rel[:, 1], boxes_rel[:, 3]) * ih / sy
    boxes = torch.stack([x1.clamp(min=0), y1.clamp(min=0), x2.clamp(max=ow), y2.clamp(max=oh)], 1)
    if truncate_boxes:
        boxes = boxes.long().float()
    return Detections(boxes=boxes.float(), scores=det["scores"].float(), labels=det["labels"].long(),
                      masks=bitmaps, mask_scores=mask_scores)
