"""Instance-mask helpers: bitmaps <-> COCO RLE, polygons, areas, boxes, resizing and pasting.

Bitmaps are ``(N, H, W)`` bool tensors (a single ``(H, W)`` mask is accepted where noted). RLEs are COCO
*compressed* RLE dicts ``{'size': [H, W], 'counts': str}``; the ``counts`` are returned as ``str`` so the result is
JSON-ready. RLE work is done by ``pycocotools.mask`` (C implementation, the reference for COCO evaluation), areas by
faster-coco-eval's identical mask API (pycocotools' ``area`` overflows on lists of >= 256 RLEs under NumPy 2).

Boxes follow paperforge's ``xyxy`` convention with exclusive ``x2``/``y2``: a mask whose pixels span columns
``3..7`` has ``x1 = 3, x2 = 8``, matching ``pycocotools.mask.toBbox`` (``x + w``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as _mask
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "mask_to_rle",
    "rle_to_mask",
    "polygons_to_rle",
    "segm_to_rle",
    "segm_to_mask",
    "as_rles",
    "rle_area",
    "rle_to_box",
    "rle_iou",
    "masks_to_boxes",
    "resize_masks",
    "paste_masks_in_boxes",
    "DEFAULT_MEMORY_LIMIT",
]

Rle = dict[str, Any]


def _str_counts(rle: Rle) -> Rle:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _bytes_counts(rle: Rle) -> Rle:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": rle["size"], "counts": counts}


def mask_to_rle(masks: Tensor | np.ndarray) -> list[Rle]:
    """Encode ``(N, H, W)`` (or one ``(H, W)``) bitmaps as a list of compressed RLE dicts with ``str`` counts."""
    if isinstance(masks, Tensor):
        masks = masks.detach().to("cpu", torch.bool).numpy()
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W) or (H, W), got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    # pycocotools wants (H, W, N) uint8 in Fortran order.
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8, copy=False))
    return [_str_counts(r) for r in _mask.encode(fortran)]


def rle_to_mask(rles: Rle | Sequence[Rle]) -> Tensor:
    """Decode one RLE to ``(H, W)`` bool or a list of RLEs (same size) to ``(N, H, W)`` bool."""
    if isinstance(rles, dict):
        return torch.from_numpy(_mask.decode(_bytes_counts(rles)).astype(bool))
    rles = list(rles)
    if not rles:
        raise ValueError("rle_to_mask needs at least one RLE to know the image size")
    decoded = _mask.decode([_bytes_counts(r) for r in rles])  # (H, W, N)
    return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)).astype(bool))


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> Rle:
    """Rasterise COCO polygons (``[[x1, y1, x2, y2, ...], ...]``, parts of one object) into one merged RLE.

    Parts with fewer than 3 points are skipped (they enclose no area; a few exist in COCO train2017). An object with
    no usable part gives an empty mask.
    """
    parts = [[float(v) for v in p] for p in polygons if len(p) >= 6]
    for p in parts:
        if len(p) % 2:
            raise ValueError(f"polygon has an odd number of coordinates ({len(p)})")
    if not parts:
        return mask_to_rle(np.zeros((1, height, width), dtype=bool))[0]
    return _str_counts(_mask.merge(_mask.frPyObjects(parts, height, width)))


def segm_to_rle(segm: Any, height: int, width: int) -> Rle:
    """Any COCO ``segmentation`` (polygons, uncompressed RLE with list counts, compressed RLE) -> compressed RLE."""
    if isinstance(segm, list):
        return polygons_to_rle(segm, height, width)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if isinstance(segm["counts"], list):
            return _str_counts(_mask.frPyObjects(segm, int(segm["size"][0]), int(segm["size"][1])))
        return _str_counts(segm)
    raise ValueError(f"unsupported segmentation of type {type(segm).__name__}: expected polygons or an RLE dict")


def segm_to_mask(segm: Any, height: int, width: int) -> Tensor:
    """Any COCO ``segmentation`` -> ``(H, W)`` bool bitmap."""
    return rle_to_mask(segm_to_rle(segm, height, width))


def as_rles(masks: Tensor | np.ndarray | Sequence[Rle]) -> list[Rle]:
    """Bitmaps ``(N, H, W)`` or a list of RLE dicts (compressed or not) -> list of compressed RLEs (``str`` counts)."""
    if isinstance(masks, (Tensor, np.ndarray)):
        return mask_to_rle(masks)
    out = []
    for i, m in enumerate(masks):
        if not isinstance(m, dict) or "size" not in m or "counts" not in m:
            raise ValueError(f"mask {i} is neither a bitmap nor an RLE dict with 'size' and 'counts'")
        out.append(segm_to_rle(m, int(m["size"][0]), int(m["size"][1])))
    return out


def rle_area(rles: Rle | Sequence[Rle]) -> np.ndarray:
    """Pixel counts of RLEs: a scalar array for one dict, ``(N,)`` for a list."""
    # pycocotools' area() overflows for lists of >= 256 RLEs under NumPy 2; faster-coco-eval's has no such limit.
    from faster_coco_eval.core import mask as _fmask

    if isinstance(rles, dict):
        return np.asarray(_fmask.area(_str_counts(rles)))
    rles = list(rles)
    if not rles:
        return np.zeros(0, dtype=np.uint64)
    return np.asarray(_fmask.area([_str_counts(r) for r in rles]))


def rle_to_box(rles: Sequence[Rle]) -> Tensor:
    """``(N, 4)`` float32 xyxy tight boxes of RLEs (empty masks give zeros)."""
    rles = list(rles)
    if not rles:
        return torch.zeros((0, 4))
    xywh = torch.from_numpy(np.asarray(_mask.toBbox([_bytes_counts(r) for r in rles]), dtype=np.float32))
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def rle_iou(dt: Sequence[Rle], gt: Sequence[Rle], iscrowd: Sequence[bool] | None = None) -> np.ndarray:
    """``(len(dt), len(gt))`` mask IoU; for crowd gts the union is the detection's area (COCO rule)."""
    dt, gt = list(dt), list(gt)
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    crowd = [0] * len(gt) if iscrowd is None else [int(c) for c in iscrowd]
    return np.asarray(_mask.iou([_bytes_counts(r) for r in dt], [_bytes_counts(r) for r in gt], crowd))


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``(N, H, W)`` bitmaps -> ``(N, 4)`` float32 xyxy tight boxes with exclusive ``x2``/``y2``; empty -> zeros."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {tuple(masks.shape)}")
    n, h, w = masks.shape
    out = torch.zeros((n, 4), dtype=torch.float32, device=masks.device)
    if n == 0:
        return out
    m = masks.bool()
    cols, rows = m.any(dim=1), m.any(dim=2)  # (N, W), (N, H)
    nonempty = cols.any(dim=1)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    big = max(h, w) + 1
    x1 = torch.where(cols, xs, big).amin(dim=1)
    x2 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y1 = torch.where(rows, ys, big).amin(dim=1)
    y2 = torch.where(rows, ys, -1).amax(dim=1) + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    out[nonempty] = boxes[nonempty]
    return out


DEFAULT_MEMORY_LIMIT = 256 * 2**20
"""Bytes of temporaries :func:`resize_masks` / :func:`paste_masks_in_boxes` allocate per chunk of masks (about 30
full-HD float32 masks at a time; detectron2's ``paste_masks_in_image`` uses 1 GiB on GPU)."""


def _chunk_size(n: int, bytes_per_mask: int, memory_limit: int | None, fn: str) -> int:
    """Masks per chunk so that one chunk's temporaries stay within ``memory_limit`` bytes (at least one mask)."""
    if memory_limit is None:
        return max(n, 1)
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit <= 0:
        raise ValueError(f"{fn}: memory_limit must be a positive number of bytes or None, got {memory_limit!r}")
    return max(1, memory_limit // max(bytes_per_mask, 1))


def resize_masks(
    masks: Tensor,
    size: Sequence[int],
    threshold: float | None = 0.5,
    *,
    output_shape: Sequence[int] | None = None,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
) -> Tensor:
    """Bilinearly resize ``(N, H, W)`` masks (bool or float) to ``size = (H', W')`` (``align_corners=False``).

    With ``output_shape = (Ho, Wo)`` the resized masks are then cropped (or zero-padded) at the bottom/right to
    that shape: masks predicted over a padded network input are resized to the padded canvas at original scale
    and the original image is kept. The work runs in chunks of masks whose float temporaries fit in
    ``memory_limit`` bytes (None: one chunk); the result does not depend on the chunking.

    Returns:
        ``(N, H', W')`` (or ``(N, Ho, Wo)``) bool masks ``> threshold`` or, with ``threshold=None``, the float values
        (the input's float dtype, float32 for bool/integer input).
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {tuple(masks.shape)}")
    rh, rw = int(size[0]), int(size[1])
    oh, ow = (rh, rw) if output_shape is None else (int(output_shape[0]), int(output_shape[1]))
    n = masks.shape[0]
    fdtype = masks.dtype if masks.is_floating_point() else torch.float32
    out = torch.zeros((n, oh, ow), dtype=torch.bool if threshold is not None else fdtype, device=masks.device)
    if n == 0:
        return out
    kh, kw = min(oh, rh), min(ow, rw)
    itemsize = torch.empty((), dtype=fdtype).element_size()
    chunk = _chunk_size(n, rh * rw * itemsize + kh * kw, memory_limit, "resize_masks")
    for start in range(0, n, chunk):
        # (k, 1, H, W): one image per mask. The CPU kernel gives bit-identical masks whatever the batch size in this
        # layout, while masks as channels of one image, (1, k, H, W), change by an ulp with k (vectorised channels)
        src = masks[start : start + chunk].to(fdtype)[:, None]
        resized = F.interpolate(src, size=(rh, rw), mode="bilinear", align_corners=False)[:, 0, :kh, :kw]
        out[start : start + chunk, :kh, :kw] = resized if threshold is None else resized > threshold
    return out


def paste_masks_in_boxes(
    masks: Tensor,
    boxes: Tensor,
    image_shape: Sequence[int],
    threshold: float | None = 0.5,
    *,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
) -> Tensor:
    """Paste box-relative masks into full images (box-cropped masks -> full image, Mask R-CNN style).

    Args:
        masks: ``(N, M, M)`` (or ``(N, Mh, Mw)``) float probabilities covering each box.
        boxes: ``(N, 4)`` xyxy boxes in image pixels.
        image_shape: ``(H, W)`` of the output.
        threshold: binarisation threshold, or None to return float values.
        memory_limit: bytes of temporaries per chunk of boxes (sampling grid and values, 12 bytes per output
            pixel per box); None pastes all boxes at once. The result does not depend on it.

    Returns:
        ``(N, H, W)`` bool (or float32) masks. Pixel centres ``(x + 0.5, y + 0.5)`` are sampled bilinearly
        (``align_corners=False``) with zero padding, so values fade to 0 within one mask cell of the box edge.
    """
    if masks.ndim != 3 or boxes.ndim != 2 or masks.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"masks (N, Mh, Mw) and boxes (N, 4) must agree, got {tuple(masks.shape)}, {tuple(boxes.shape)}"
        )
    h, w = int(image_shape[0]), int(image_shape[1])
    n = masks.shape[0]
    out = torch.zeros((n, h, w), dtype=torch.float32 if threshold is None else torch.bool, device=masks.device)
    xs = torch.arange(w, device=masks.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=masks.device, dtype=torch.float32) + 0.5
    chunk = _chunk_size(n, 12 * h * w, memory_limit, "paste_masks_in_boxes")
    for start in range(0, n, chunk):
        b = boxes[start : start + chunk].float()
        m = masks[start : start + chunk].float()[:, None]
        bw = (b[:, 2] - b[:, 0]).clamp(min=1e-6)
        bh = (b[:, 3] - b[:, 1]).clamp(min=1e-6)
        gx = (xs[None] - b[:, 0:1]) / bw[:, None] * 2 - 1  # (k, W)
        gy = (ys[None] - b[:, 1:2]) / bh[:, None] * 2 - 1  # (k, H)
        k = b.shape[0]
        grid = torch.stack([gx[:, None, :].expand(k, h, w), gy[:, :, None].expand(k, h, w)], dim=3)
        pasted = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
        out[start : start + chunk] = pasted if threshold is None else pasted > threshold
    return out
