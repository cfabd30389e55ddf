"""Automatic mask generation ("segment everything", Kirillov et al., 2023, Sec. 7.1 and App. B): prompt SAM with a
regular grid of single points over the image (and, optionally, over overlapping crops with their own grids), keep
the masks whose predicted IoU and stability score are high, remove duplicates with box NMS (``forge.ops``), and
optionally drop small islands and fill small holes. Same parameters, defaults and record fields as
``segment_anything.SamAutomaticMaskGenerator`` (checked against it on seeded weights, ``docs/edgesam.md``).

Boxes here follow the official AMG, not paperforge's exclusive convention: a mask's box is ``(first column, first
row, last column, last row)`` (inclusive), its ``bbox`` ``[x0, y0, x1 - x0, y1 - y0]``; NMS and the crop-edge test
run on those boxes so that the same masks survive as in the official code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from edgesam.predictor import SamPredictor
from edgesam.sam import Sam
from forge.ops import box_area, mask_to_rle, masks_to_boxes, rle_area, rle_to_mask, standard_nms

OUTPUT_MODES = ("coco_rle", "binary_mask")


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n^2, 2)`` (x, y) points in [0, 1]: the centres of an ``n x n`` grid of equal cells, row by row."""
    if n_per_side < 1:
        raise ValueError(f"points per side must be >= 1, got {n_per_side}")
    side = (np.arange(n_per_side, dtype=np.float64) + 0.5) / n_per_side
    xs, ys = np.meshgrid(side, side)  # xs varies along a row
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer: layer i has ``int(n_per_side / scale_per_layer**i)`` points per side."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Sequence[int], n_layers: int, overlap_ratio: float
                        ) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` (pixels) and their layer: the whole image (layer 0), then for layer i
    ``2^i x 2^i`` crops that overlap by ``overlap_ratio * short side * 2 / 2^i`` pixels (rounded down)."""
    h, w = int(im_size[0]), int(im_size[1])
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * min(h, w) * 2 / n)
        crop_w = math.ceil((overlap * (n - 1) + w) / n)
        crop_h = math.ceil((overlap * (n - 1) + h) / n)
        x0s = [int((crop_w - overlap) * i) for i in range(n)]
        y0s = [int((crop_h - overlap) * i) for i in range(n)]
        for x0, y0 in product(x0s, y0s):  # column-major over the crops, as the official order
            boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
            layers.append(layer)
    return boxes, layers


def stability_score(logits: Tensor, mask_threshold: float, offset: float) -> Tensor:
    """``(..., H, W)`` logits -> ``(...)`` IoU of the masks binarised at ``threshold + offset`` and at
    ``threshold - offset`` (the first lies inside the second, so the IoU is a ratio of pixel counts)."""
    inner = (logits > mask_threshold + offset).flatten(-2).sum(-1)
    outer = (logits > mask_threshold - offset).flatten(-2).sum(-1)
    return inner.float() / outer.float()


def mask_boxes(masks: Tensor) -> Tensor:
    """``(N, H, W)`` bool -> ``(N, 4)`` int64 inclusive boxes ``(x0, y0, x1, y1)`` of the official AMG; an empty mask
    gives zeros."""
    boxes = masks_to_boxes(masks).long()  # exclusive x1 / y1, zeros for empty masks
    nonempty = masks.flatten(1).any(1)
    boxes[nonempty, 2:] -= 1
    return boxes


def is_box_near_crop_edge(boxes: Tensor, crop_box: Sequence[int], orig_box: Sequence[int],
                          atol: float = 20.0) -> Tensor:
    """``(N,)`` True for crop-frame boxes with a side within ``atol`` of a crop edge that is not an image edge
    (such a mask is probably cut by the crop)."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    b = (boxes + crop.new_tensor([crop_box[0], crop_box[1]] * 2)).float()
    near_crop = (b - crop).abs() <= atol
    near_image = (b - orig).abs() <= atol
    return (near_crop & ~near_image).any(dim=1)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or drop islands (``'islands'``) with fewer than ``area_thresh`` pixels
    (8-connected). When every island is small the largest is kept. Returns the mask and whether it changed."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = mask != holes  # holes: the background's components; islands: the mask's
    labels, n = ndimage.label(work, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if holes:
        return (labels == 0) | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if keep.size == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Class-agnostic greedy NMS (``forge.ops.standard_nms``), kept indices by decreasing score."""
    keep, _, _ = standard_nms(boxes.float(), scores.float()[:, None], iou_threshold=iou_threshold, top_k=None,
                              max_det=None)
    return keep


def _select(data: dict[str, Any], keep: Tensor) -> dict[str, Any]:
    """Rows ``keep`` (bool mask or indices) of every tensor / list in ``data``."""
    out = {}
    idx = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
    for k, v in data.items():
        out[k] = v[idx.to(v.device)] if isinstance(v, Tensor) else [v[i] for i in idx.tolist()]
    return out


def _cat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    keys = parts[0].keys()
    return {k: torch.cat([p[k] for p in parts]) if isinstance(parts[0][k], Tensor) else sum((p[k] for p in parts), [])
            for k in keys}


class SamAutomaticMaskGenerator:
    """Masks for a whole image from a grid of point prompts (parameters as ``segment_anything``'s; the defaults are
    those chosen for SAM ViT-H).

    Args:
        model: a ``Sam`` (SAM, MobileSAM or EdgeSAM).
        points_per_side: grid points along each side (``points_per_side^2`` prompts); None with ``point_grids``.
        points_per_batch: prompts decoded at once.
        pred_iou_thresh: keep masks whose predicted IoU is ``>`` this (0 disables).
        stability_score_thresh: keep masks whose stability score is ``>=`` this (0 disables).
        stability_score_offset: logit offset of the stability score.
        box_nms_thresh: box IoU above which a lower-IoU mask of the same crop is a duplicate.
        crop_n_layers: extra crop layers (layer i has ``(2^i)^2`` crops); 0 runs on the whole image only.
        crop_nms_thresh: box IoU for duplicates between crops (masks of smaller crops are preferred).
        crop_overlap_ratio: overlap of neighbouring first-layer crops, as a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses ``points_per_side / factor^i`` points per side.
        point_grids: explicit ``(P, 2)`` grids in [0, 1] (x, y), one per layer; exclusive with points_per_side.
        min_mask_region_area: fill holes and drop islands smaller than this many pixels, then NMS again (0: off).
        output_mode: ``'coco_rle'`` (compressed RLE dicts with str counts) or ``'binary_mask'`` (``(H, W)`` bool).
    """

    def __init__(self, model: Sam, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "coco_rle") -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if points_per_side is not None:
            point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        point_grids = [np.asarray(g, np.float64) for g in point_grids]
        if len(point_grids) < crop_n_layers + 1:
            raise ValueError(f"point_grids has {len(point_grids)} grids; crop_n_layers={crop_n_layers} needs "
                             f"{crop_n_layers + 1}")
        for i, g in enumerate(point_grids):
            if g.ndim != 2 or g.shape[1] != 2 or len(g) == 0 or g.min() < 0 or g.max() > 1:
                raise ValueError(f"point_grids[{i}] must be a non-empty (P, 2) array in [0, 1], got {g.shape}")
        self.point_grids = point_grids
        self.predictor = SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks of an ``(H, W, 3)`` uint8 RGB image, best first within each stage.

        Returns one record per mask: ``segmentation`` (COCO RLE at the image size, or an ``(H, W)`` bool array),
        ``area`` (pixels), ``bbox`` (XYWH, inclusive as above), ``predicted_iou``, ``point_coords`` (``[[x, y]]``,
        the prompt in image pixels), ``stability_score`` and ``crop_box`` (XYWH of the crop it came from).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        data = self._generate_masks(image)
        if self.min_mask_region_area > 0 and data["rles"]:
            data = self.postprocess_small_regions(data, self.min_mask_region_area,
                                                  max(self.box_nms_thresh, self.crop_nms_thresh))
        records = []
        for i, rle in enumerate(data["rles"]):
            x0, y0, x1, y1 = data["boxes"][i].tolist()
            cx0, cy0, cx1, cy1 = data["crop_boxes"][i].tolist()
            records.append({
                "segmentation": rle if self.output_mode == "coco_rle" else rle_to_mask(rle).numpy(),
                "area": int(rle_area(rle)),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
            })
        return records

    def _generate_masks(self, image: np.ndarray) -> dict[str, Any]:
        orig_size = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        parts = [self._process_crop(image, box, layer, orig_size) for box, layer in zip(crop_boxes, layers)]
        data = _cat(parts)
        if len(crop_boxes) > 1 and data["rles"]:
            # duplicates between crops: prefer the mask of the smaller crop
            data = _select(data, _nms(data["boxes"], 1.0 / box_area(data["crop_boxes"].float()),
                                      self.crop_nms_thresh))
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int,
                      orig_size: Sequence[int]) -> dict[str, Any]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_size = crop.shape[:2]
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array(crop_size[::-1], np.float64)[None]  # (P, 2) crop pixels
        parts = [self._process_batch(points[i:i + self.points_per_batch], crop_size, crop_box, orig_size)
                 for i in range(0, len(points), self.points_per_batch)]
        self.predictor.reset_image()
        data = _cat(parts)
        data = _select(data, _nms(data["boxes"], data["iou_preds"], self.box_nms_thresh))
        offset = torch.tensor([x0, y0])
        data["boxes"] = data["boxes"] + offset.repeat(2)
        data["points"] = data["points"] + offset.double()
        data["crop_boxes"] = torch.tensor([crop_box] * len(data["rles"]), dtype=torch.long).reshape(-1, 4)
        return data

    def _process_batch(self, points: np.ndarray, crop_size: Sequence[int], crop_box: list[int],
                       orig_size: Sequence[int]) -> dict[str, Any]:
        """Decode ``(B, 2)`` crop-pixel points, 3 masks each; filter; RLEs at the original image size."""
        orig_h, orig_w = orig_size
        pred = self.predictor
        coords = pred.transform.apply_coords(torch.as_tensor(points), crop_size).to(pred.device)
        labels = torch.ones(len(points), dtype=torch.int64, device=pred.device)
        logits, iou, _ = pred.predict_torch(coords[:, None], labels[:, None], multimask_output=True,
                                            return_logits=True)
        k = logits.shape[1]
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        pts = torch.as_tensor(points).repeat_interleave(k, dim=0)
        keep = torch.ones_like(iou, dtype=torch.bool)
        if self.pred_iou_thresh > 0:
            keep = iou > self.pred_iou_thresh
        logits, iou, pts = logits[keep], iou[keep], pts[keep.cpu()]
        stab = stability_score(logits, pred.model.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0:
            keep = stab >= self.stability_score_thresh
            logits, iou, pts, stab = logits[keep], iou[keep], pts[keep.cpu()], stab[keep]
        masks = logits > pred.model.mask_threshold
        del logits
        boxes = mask_boxes(masks)
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        masks, iou, pts, stab, boxes = masks[keep], iou[keep], pts[keep.cpu()], stab[keep], boxes[keep]
        x0, y0, x1, y1 = crop_box
        if (x0, y0, x1, y1) != (0, 0, orig_w, orig_h):  # back into the whole image
            masks = torch.nn.functional.pad(masks, (x0, orig_w - x1, y0, orig_h - y1))
        return {"rles": mask_to_rle(masks), "iou_preds": iou.float().cpu(), "points": pts,
                "stability_score": stab.cpu(), "boxes": boxes.cpu()}

    @staticmethod
    def postprocess_small_regions(data: dict[str, Any], min_area: int, nms_thresh: float) -> dict[str, Any]:
        """Fill small holes and drop small islands of every mask, then NMS again, preferring unchanged masks
        (score 1) over changed ones (score 0). Boxes and RLEs of kept, changed masks are recomputed."""
        masks, scores = [], []
        for rle in data["rles"]:
            m = rle_to_mask(rle).numpy()
            m, filled = remove_small_regions(m, min_area, "holes")
            m, dropped = remove_small_regions(m, min_area, "islands")
            masks.append(torch.from_numpy(m))
            scores.append(0.0 if filled or dropped else 1.0)
        masks = torch.stack(masks)
        boxes = mask_boxes(masks)
        keep = _nms(boxes, torch.tensor(scores), nms_thresh)
        data = dict(data, rles=list(data["rles"]), boxes=data["boxes"].clone())
        for i in keep.tolist():
            if scores[i] == 0.0:
                data["rles"][i] = mask_to_rle(masks[i])[0]
                data["boxes"][i] = boxes[i]
        return _select(data, keep)
