"""YOLACT post-processing: NMS picked by name from forge.ops.nms, masks upsampled in bounded-memory chunks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from forge.data.structures import ImageMeta
from forge.ops.nms import NMS_FUNCTIONS, cc_fast_nms, fast_nms, soft_nms, standard_nms
from yolact.assembly import assemble_masks, crop_masks
from yolact.box_coding import decode
from yolact.postprocess import NMS_KINDS, detect_single, nms_options, to_original


def _detections(n: int, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand((n, 2), generator=g) * 0.6
    boxes = torch.cat([xy, xy + torch.rand((n, 2), generator=g) * 0.35 + 0.05], 1)
    return {"boxes": boxes, "labels": torch.randint(0, 3, (n,), generator=g),
            "scores": torch.rand(n, generator=g).sort(descending=True).values,
            "coefs": torch.randn((n, k), generator=g) * 3}


@pytest.mark.parametrize("input_size,meta_shapes", [
    ((138, 138), dict(ori_shape=(720, 1280), img_shape=(138, 138), scale_factor=(138 / 1280, 138 / 720))),
    ((64, 96), dict(ori_shape=(150, 170), img_shape=(64, 72), scale_factor=(72 / 170, 64 / 150))),  # padded right
])
def test_to_original_in_chunks_equals_one_call(input_size, meta_shapes):
    protos = torch.randn((4, input_size[0] // 4, input_size[1] // 4), generator=torch.Generator().manual_seed(1))
    det = _detections(9)
    meta = ImageMeta(image_id=0, pad_shape=input_size, **meta_shapes)
    whole = to_original(det, protos, meta, input_size, memory_limit=None)
    oh, ow = meta.ori_shape
    # the unchunked formula, one mask at a time: crop, upsample to the padded canvas at original scale, keep the image
    masks = crop_masks(assemble_masks(protos, det["coefs"]), det["boxes"], padding=1)
    canvas = (round(input_size[0] / meta.scale_factor[1]), round(input_size[1] / meta.scale_factor[0]))
    ref = torch.cat([F.interpolate(m[None, None], canvas, mode="bilinear", align_corners=False)[0] for m in masks])
    ref = F.pad(ref[:, :oh, :ow] > 0.5, (0, max(0, ow - canvas[1]), 0, max(0, oh - canvas[0])))
    assert whole.masks.shape == (9, oh, ow) and torch.equal(whole.masks, ref) and whole.masks.any()
    for limit in (1, 3 * canvas[0] * canvas[1] * 4 + canvas[0] * canvas[1]):  # 9 chunks of 1, 3 chunks of 3
        part = to_original(det, protos, meta, input_size, memory_limit=limit)
        assert torch.equal(part.masks, whole.masks)
        assert torch.equal(part.boxes, whole.boxes)


def test_to_original_without_detections():
    meta = ImageMeta(image_id=0, ori_shape=(30, 40), img_shape=(32, 32), scale_factor=(32 / 40, 32 / 30))
    pred = to_original(_detections(0), torch.zeros((4, 8, 8)), meta, (32, 32), memory_limit=1)
    assert pred.masks.shape == (0, 30, 40) and pred.masks.dtype == torch.bool


def test_every_registered_nms_is_selectable_by_name():
    assert set(NMS_KINDS) == set(NMS_FUNCTIONS) == {"fast", "cc_fast", "standard", "soft"}
    g = torch.Generator().manual_seed(3)
    a = 300
    anchors = torch.cat([torch.rand((a, 2), generator=g), torch.rand((a, 2), generator=g) * 0.3 + 0.05], 1)
    deltas = torch.randn((a, 4), generator=g) * 0.5
    probs = torch.softmax(torch.randn((a, 4), generator=g) * 2, 1)
    coefs = torch.randn((a, 8), generator=g)
    keep = probs[:, 1:].max(1).values > 0.05
    boxes, fg = decode(deltas[keep], anchors[keep]), probs[keep, 1:]
    direct = {  # the options YOLACT's Detect uses for each kind
        "fast": fast_nms(boxes, fg, iou_threshold=0.5, top_k=200, max_det=100),
        "cc_fast": cc_fast_nms(boxes, fg, iou_threshold=0.5, top_k=200, max_det=100),
        "standard": standard_nms(boxes, fg, iou_threshold=0.5, score_threshold=0.05, top_k=None, max_det=100),
        "soft": soft_nms(boxes, fg, iou_threshold=0.5, score_threshold=0.05, top_k=200, max_det=100),
    }
    for name in NMS_KINDS:
        det = detect_single(deltas, probs, coefs, anchors, nms=name)
        idx, labels, scores = direct[name]
        assert torch.equal(det["labels"], labels) and torch.equal(det["scores"], scores), name
        assert torch.equal(det["boxes"], boxes[idx]) and torch.equal(det["coefs"], coefs[keep][idx]), name
    assert nms_options("fast", 0.05, 0.5, 200, 100)["score_threshold"] is None
    with pytest.raises(ValueError, match="nms must be one of"):
        detect_single(deltas, probs, coefs, anchors, nms="greedy")
