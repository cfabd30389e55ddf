"""Seeded random COCO / LVIS evaluation cases shared by the evaluation tests and ``benchmarks/eval_speed.py``.

A case is a ground-truth dict in COCO (or LVIS) layout plus detection lists in the COCO result format:

* images of varied sizes, some without any annotation (and some of those with false positives only);
* non-consecutive category ids, one category with no ground truth at all;
* objects of all COCO size buckets, as multi-part polygons **and** compressed RLE; crowd regions as uncompressed
  RLE (list counts, as in COCO);
* detections: jittered true positives, duplicates, wrong classes, false positives, detections on crowd regions,
  tied scores (rounded to 2 decimals) and one image with more detections than ``maxDets``.

Segmentation results carry no ``bbox`` (so area buckets use the mask area, as in ``forge.evaluation.coco``).
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util


def _polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, w: int, h: int) -> list[float]:
    k = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radius = rng.uniform(0.6, 1.0, k)
    xs = np.clip(cx + rx * radius * np.cos(angles), 0, w)
    ys = np.clip(cy + ry * radius * np.sin(angles), 0, h)
    return np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()


def _object(rng: np.random.Generator, w: int, h: int) -> list[list[float]]:
    """Polygons (1-2 parts) of one object, sizes log-uniform so that small/medium/large all occur."""
    size = float(np.exp(rng.uniform(np.log(4), np.log(min(w, h) * 0.9))))
    aspect = float(np.exp(rng.uniform(-0.7, 0.7)))
    rx, ry = size * aspect / 2, size / aspect / 2
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    parts = [_polygon(rng, cx, cy, rx, ry, w, h)]
    if rng.random() < 0.15:
        parts.append(_polygon(rng, cx + rx, cy + ry * 0.5, rx * 0.4, ry * 0.4, w, h))
    return parts


def _rle(parts: list[list[float]], h: int, w: int) -> dict:
    return mask_util.merge(mask_util.frPyObjects(parts, h, w))


def _str(rle: dict) -> dict:
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _jitter(rng: np.random.Generator, parts: list[list[float]], amount: float, w: int, h: int) -> list[list[float]]:
    out = []
    dx, dy = rng.normal(0, amount, 2)
    scale = float(np.exp(rng.normal(0, 0.1)))
    for p in parts:
        a = np.asarray(p).reshape(-1, 2)
        c = a.mean(0)
        a = (a - c) * scale + c + [dx, dy] + rng.normal(0, amount * 0.3, a.shape)
        a[:, 0] = np.clip(a[:, 0], 0, w)
        a[:, 1] = np.clip(a[:, 1], 0, h)
        out.append(np.round(a.reshape(-1), 2).tolist())
    return out


def _uncompressed(rle: dict) -> dict:
    """Compressed RLE -> COCO's uncompressed form (``counts`` as a list of run lengths)."""
    flat = mask_util.decode(rle).flatten(order="F")
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat[0]:
        runs = [0] + runs  # counts start with a run of zeros
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": [int(r) for r in runs]}


def _dt_entries(image_id, cat_id, parts, score, w, h, want_masks):
    x_min = min(min(p[0::2]) for p in parts)
    x_max = max(max(p[0::2]) for p in parts)
    y_min = min(min(p[1::2]) for p in parts)
    y_max = max(max(p[1::2]) for p in parts)
    box = {
        "image_id": image_id,
        "category_id": cat_id,
        "bbox": [x_min, y_min, x_max - x_min, y_max - y_min],
        "score": score,
    }
    segm = None
    if want_masks:
        segm = {"image_id": image_id, "category_id": cat_id, "segmentation": _str(_rle(parts, h, w)), "score": score}
    return box, segm


def make_coco_case(
    seed: int = 0,
    num_images: int = 200,
    num_classes: int = 30,
    max_objects: int = 12,
    fp_per_image: int = 4,
    extra_dets_per_image: int = 0,
    with_masks: bool = True,
    empty_frac: float = 0.1,
) -> dict:
    """Random COCO case; returns ``{'gt': dict, 'dt_bbox': list, 'dt_segm': list}``.

    ``extra_dets_per_image`` adds that many low-score random detections per image (a model's long tail, to reach
    realistic ~100 detections/image for benchmarks).
    """
    rng = np.random.default_rng(seed)
    cat_ids = sorted(rng.choice(np.arange(1, 4 * num_classes), size=num_classes, replace=False).tolist())
    categories = [{"id": int(c), "name": f"class_{c}", "supercategory": "thing"} for c in cat_ids]
    gt_cats = cat_ids[:-1]  # the last category never appears in the ground truth
    images, anns, dt_bbox, dt_segm = [], [], [], []
    ann_id = 1
    for i in range(num_images):
        image_id = int(1000 + 3 * i)  # non-consecutive image ids
        h, w = int(rng.integers(120, 420)), int(rng.integers(120, 420))
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id:012d}.jpg"})
        n_obj = 0 if rng.random() < empty_frac else int(rng.integers(1, max_objects + 1))
        for _ in range(n_obj):
            parts = _object(rng, w, h)
            cat = int(rng.choice(gt_cats))
            rle = _rle(parts, h, w)
            area = float(mask_util.area(rle))
            if area == 0:
                continue
            bbox = [float(v) for v in mask_util.toBbox(rle)]
            crowd = rng.random() < 0.04
            if crowd:
                segm = _uncompressed(rle)
            elif rng.random() < 0.2:
                segm = _str(rle)
            else:
                segm = parts
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": bbox,
                    "area": area,
                    "iscrowd": int(crowd),
                    "segmentation": segm,
                }
            )
            ann_id += 1
            # detections of this object
            n_det = int(rng.choice([0, 1, 1, 1, 2, 3]))
            for _ in range(n_det):
                det_cat = cat if rng.random() > 0.1 else int(rng.choice(cat_ids))
                jittered = _jitter(rng, parts, 0.08 * np.sqrt(area) + 0.5, w, h)
                score = round(float(rng.beta(3, 1.5)), 2)
                box, seg = _dt_entries(image_id, det_cat, jittered, score, w, h, with_masks)
                dt_bbox.append(box)
                if seg is not None:
                    dt_segm.append(seg)
        n_fp = int(rng.integers(0, fp_per_image + 1)) + extra_dets_per_image
        if i == 3:
            n_fp += 150  # more than maxDets=100 in one image
        for j in range(n_fp):
            parts = _object(rng, w, h)
            low = j >= n_fp - extra_dets_per_image
            score = round(float(rng.uniform(0, 0.3 if low else 0.9)), 2)
            box, seg = _dt_entries(image_id, int(rng.choice(cat_ids)), parts, score, w, h, with_masks)
            if box["bbox"][2] <= 0 or box["bbox"][3] <= 0:
                continue
            dt_bbox.append(box)
            if seg is not None:
                dt_segm.append(seg)
    gt = {
        "info": {"description": f"random case seed={seed}"},
        "images": images,
        "annotations": anns,
        "categories": categories,
    }
    return {"gt": gt, "dt_bbox": dt_bbox, "dt_segm": dt_segm}


def make_lvis_case(seed: int = 0, num_images: int = 120, num_classes: int = 40, with_masks: bool = True) -> dict:
    """Random LVIS case (federated): ``{'gt': dict, 'dt_bbox': list, 'dt_segm': list}``.

    Every image lists negative categories (verified absent) and not-exhaustive categories (a subset of the present
    ones); detections hit positive, negative and unlisted categories (the latter must be dropped), and one image has
    more than 300 detections.
    """
    rng = np.random.default_rng(seed + 7919)
    cat_ids = list(range(1, num_classes + 1))
    freqs = ["r", "c", "f"]
    categories = [
        {
            "id": c,
            "name": f"lvis_{c}",
            "frequency": freqs[c % 3],
            "synset": f"s{c}",
            "image_count": 1,
            "instance_count": 1,
        }
        for c in cat_ids
    ]
    images, anns, dt_bbox, dt_segm = [], [], [], []
    ann_id = 1
    for i in range(num_images):
        image_id = i + 1
        h, w = int(rng.integers(120, 400)), int(rng.integers(120, 400))
        n_obj = 0 if rng.random() < 0.1 else int(rng.integers(1, 10))
        present = set()
        for _ in range(n_obj):
            parts = _object(rng, w, h)
            cat = int(rng.integers(1, num_classes + 1))
            rle = _rle(parts, h, w)
            area = float(mask_util.area(rle))
            if area == 0:
                continue
            present.add(cat)
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                    "area": area,
                    "segmentation": parts,
                }
            )
            ann_id += 1
            for _ in range(int(rng.choice([0, 1, 1, 2]))):
                det_cat = cat if rng.random() > 0.15 else int(rng.integers(1, num_classes + 1))
                jittered = _jitter(rng, parts, 0.08 * np.sqrt(area) + 0.5, w, h)
                box, seg = _dt_entries(image_id, det_cat, jittered, round(float(rng.beta(3, 1.5)), 2), w, h, with_masks)
                dt_bbox.append(box)
                if seg is not None:
                    dt_segm.append(seg)
        absent = [c for c in cat_ids if c not in present]
        neg = sorted(rng.choice(absent, size=min(len(absent), int(rng.integers(0, 6))), replace=False).tolist())
        nel = sorted(c for c in present if rng.random() < 0.3)
        images.append(
            {
                "id": image_id,
                "width": w,
                "height": h,
                "coco_url": f"http://x/{image_id}.jpg",
                "neg_category_ids": [int(c) for c in neg],
                "not_exhaustive_category_ids": [int(c) for c in nel],
            }
        )
        n_fp = int(rng.integers(0, 8)) + (320 if i == 2 else 0)
        pool = list(present) + list(neg) + cat_ids[:3]
        for _ in range(n_fp):
            parts = _object(rng, w, h)
            box, seg = _dt_entries(
                image_id, int(rng.choice(pool)), parts, round(float(rng.uniform(0, 0.9)), 2), w, h, with_masks
            )
            if box["bbox"][2] <= 0 or box["bbox"][3] <= 0:
                continue
            dt_bbox.append(box)
            if seg is not None:
                dt_segm.append(seg)
    gt = {"images": images, "annotations": anns, "categories": categories}
    return {"gt": gt, "dt_bbox": dt_bbox, "dt_segm": dt_segm}
