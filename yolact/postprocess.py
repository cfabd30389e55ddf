"""Test-time post-processing (YOLACT Sec. 3.5 and the original ``Detect`` / ``postprocess``).

1. Softmax class scores; drop anchors whose best foreground score is ``<= conf_thresh`` (0.05).
2. Decode boxes; NMS chosen by name from :data:`forge.ops.nms.NMS_FUNCTIONS` (``model.nms=...``): Fast NMS per
   class (default: top 200 per class, IoU 0.5, keep 100 over all classes, no post-NMS score threshold),
   class-agnostic Fast NMS, standard greedy NMS or Soft-NMS.
3. Masks: ``sigmoid(P c)`` at prototype resolution, cropped to the predicted box (1 cell padding),
   (YOLACT++: mask score = class score x predicted mask IoU from the re-scoring net), bilinearly upsampled and
   thresholded at 0.5, in chunks of bounded memory (:func:`forge.ops.masks.resize_masks`).
4. Boxes and masks mapped from the network input to the original image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from forge.data.structures import Detections, ImageMeta
from forge.ops.masks import DEFAULT_MEMORY_LIMIT, resize_masks
from forge.ops.nms import NMS_FUNCTIONS, get_nms

from .assembly import assemble_masks, crop_masks
from .box_coding import decode

NMS_KINDS = tuple(NMS_FUNCTIONS)


def nms_options(nms: str, conf_thresh: float, iou_threshold: float, top_k: int, max_det: int) -> dict:
    """The NMS keyword options YOLACT's ``Detect`` uses for ``nms``.

    Fast NMS (per class or class-agnostic) keeps each class's ``top_k`` whatever their score (the original applies
    no second threshold); the greedy paths (standard NMS, as the original's ``traditional_nms``, and Soft-NMS)
    threshold every (box, class) pair at ``conf_thresh``. Standard NMS has no per-class cap in the original, Soft-NMS
    keeps ``top_k`` to bound its loop.
    """
    if nms not in NMS_KINDS:
        raise ValueError(f"yolact: nms must be one of {NMS_KINDS}, got {nms!r}")
    fast = nms in ("fast", "cc_fast")
    return dict(iou_threshold=iou_threshold, score_threshold=None if fast else conf_thresh,
                top_k=None if nms == "standard" else top_k, max_det=max_det)


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
        nms: a name of :data:`forge.ops.nms.NMS_FUNCTIONS`, given the options of :func:`nms_options`.

    Returns:
        ``boxes (n, 4)`` relative xyxy, ``labels (n,)`` 0-based, ``scores (n,)``, ``coefs (n, k)``, sorted by score.
    """
    options = nms_options(nms, conf_thresh, iou_threshold, top_k, max_det)
    fg = probs[:, 1:]
    keep = fg.max(1).values > conf_thresh
    boxes = decode(deltas[keep], anchors[keep])
    fg, coefs = fg[keep], coefs[keep]
    idx, labels, scores = get_nms(nms)(boxes, fg, **options)
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
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
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
        memory_limit: bytes of float temporaries for upsampling a chunk of masks (100 full-resolution float32
            masks of an HD image would be about 830 MB at once); the result does not depend on it.

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
    bitmaps = resize_masks(masks, canvas, mask_threshold, output_shape=(oh, ow), memory_limit=memory_limit)
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
