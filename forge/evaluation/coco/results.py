"""COCO result I/O: reading and validating result files, and model outputs -> COCO result dicts.

Result format (COCO json): ``{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}`` for boxes and
``{'image_id', 'category_id', 'segmentation': RLE, 'score'}`` for masks. Mask results written by
:func:`detections_to_coco` deliberately carry no ``bbox`` so that the area buckets use the mask area (see
:mod:`forge.evaluation.coco`). Pure Python + numpy: nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from forge.data.coco_reader import CocoAnnotations
from forge.evaluation.errors import EvalInputError

__all__ = [
    "ResultsError",
    "check_ids",
    "check_results",
    "detections_to_coco",
    "load_gt",
    "load_results",
    "to_numpy",
]


class ResultsError(EvalInputError):
    """Bad detection results; the message names the file (or source) and the entry at fault."""


def load_results(results: str | os.PathLike | Sequence[dict], name: str | None = None) -> tuple[list[dict], str]:
    """Read COCO-format results (json path or list of dicts); returns ``(list_of_dicts, source_name)``.

    A given list is shallow-copied (its dicts too), so the caller's objects are never modified.
    """
    if isinstance(results, (str, os.PathLike)):
        src = os.fspath(results)
        try:
            with open(src) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ResultsError(f"{src}: file not found") from None
        except IsADirectoryError:
            raise ResultsError(f"{src}: is a directory, not a file") from None
        except UnicodeDecodeError as e:
            raise ResultsError(f"{src}: not a text (UTF-8 JSON) file ({e.reason})") from None
        except json.JSONDecodeError as e:
            raise ResultsError(f"{src}: not valid JSON ({e})") from None
    else:
        src, data = name or "<results>", results
    if not isinstance(data, list):
        raise ResultsError(f"{src}: results must be a JSON list of detections, got {type(data).__name__}")
    if all(type(r) is dict for r in data):  # the usual case
        out = data if data is not results else list(map(dict, data))  # dicts parsed here are nobody else's
    else:
        out = []
        for i, r in enumerate(data):
            if not isinstance(r, Mapping):
                raise ResultsError(f"{src}: result #{i} is not an object")
            out.append(dict(r))
    return out, name or src


def load_gt(gt: Any, cls: type[CocoAnnotations] = CocoAnnotations) -> CocoAnnotations:
    """``gt`` (path, dict or annotations object) as a ``cls`` instance; degenerate boxes are kept (as COCO does)."""
    if isinstance(gt, cls):
        return gt
    if isinstance(gt, CocoAnnotations):  # e.g. a plain CocoAnnotations given to the LVIS evaluator
        return cls(gt.dataset, gt.source, degenerate="keep")
    return cls.load(gt, degenerate="keep")


def _first(flags: Any) -> int:
    return int(np.argmax(np.asarray(list(flags), dtype=bool)))


def check_results(results: list[dict], coco: CocoAnnotations, iou_type: str, src: str) -> None:
    """Validate detections before they reach the C++ engine (which would crash or assert without context).

    Column-wise (C-speed) checks first; the per-entry message is only built for the first offending entry.

    Raises:
        ResultsError: naming ``src``, the entry index, its ``image_id`` and the problem.
    """
    if not results:
        return

    def fail(i: int, msg: str):
        raise ResultsError(f"{src}: result #{i} (image_id={results[i].get('image_id')!r}): {msg}")

    missing = object()
    img_col: list = []
    keys = ["image_id", "category_id", "score"]
    # pycocotools takes every detection area from the boxes when the first result has one (also for segm)
    if iou_type == "bbox" or "bbox" in results[0]:
        keys.append("bbox")
    if iou_type == "segm":
        keys.append("segmentation")
    for key in keys:
        try:
            col = list(map(itemgetter(key), results))
        except KeyError:
            col = [r.get(key, missing) for r in results]
            hint = " (the first result has one, so every area comes from the boxes)" if key == "bbox" else ""
            fail(col.index(missing), f"missing key '{key}'{hint if iou_type == 'segm' else ''}")
        if key in ("image_id", "category_id"):
            known = coco.images if key == "image_id" else coco.cats
            try:
                bad = set(col) - known.keys()
            except TypeError:  # an unhashable value (a list, a dict)
                fail(_first(not isinstance(v, (int, str, float)) for v in col), f"{key} must be an integer")
            if bad:
                at = _first(v in bad for v in col)
                if key == "image_id":
                    fail(at, f"image_id is not in the ground truth {coco.source}")
                fail(
                    at,
                    f"unknown category_id {col[at]!r} (not among the {len(coco.cats)} categories of {coco.source})",
                )
            if key == "image_id":
                img_col = col
        elif key == "score":
            odd = {t for t in set(map(type, col)) if t not in (int, float) and not issubclass(t, np.floating)}
            if odd:
                fail(_first(type(v) in odd for v in col), "score must be a number")
            arr = np.asarray(col, dtype=np.float64)
            if not np.isfinite(arr).all():
                fail(_first(~np.isfinite(arr)), "score must be finite")
        elif key == "bbox":
            try:
                arr = np.asarray(col, dtype=np.float64)
                ok = arr.ndim == 2 and arr.shape[1] == 4
            except (TypeError, ValueError):
                ok = False
            if not ok:
                shape_ok = [isinstance(b, (list, tuple)) and len(b) == 4 for b in col]
                at = _first(not s for s in shape_ok) if not all(shape_ok) else 0
                fail(at, "bbox must be 4 finite numbers [x, y, w, h]")
            if not np.isfinite(arr).all():
                fail(_first(~np.isfinite(arr).all(1)), "bbox must be 4 finite numbers [x, y, w, h]")
            if (arr[:, 2:] < 0).any():
                fail(_first((arr[:, 2:] < 0).any(1)), "bbox has a negative width/height")
        else:  # segmentation
            images = coco.images
            for i, seg in enumerate(col):
                if not isinstance(seg, Mapping) or "size" not in seg or "counts" not in seg:
                    fail(i, "segmentation must be an RLE dict with 'size' and 'counts'")
                if not isinstance(seg["counts"], (str, bytes)):
                    fail(i, "segmentation must be a compressed RLE (string 'counts')")
                img = images[img_col[i]]
                size = seg["size"]
                if not isinstance(size, (list, tuple)) or len(size) != 2:
                    fail(i, f"RLE size must be [height, width], got {size!r}")
                if size[0] != img["height"] or size[1] != img["width"]:
                    fail(i, f"RLE size {list(size)} differs from the image size [{img['height']}, {img['width']}]")


def check_ids(coco: CocoAnnotations, img_ids: Sequence[int] | None, cat_ids: Sequence[int] | None) -> None:
    """Raise :class:`ResultsError` if ``img_ids`` / ``cat_ids`` name images / categories unknown to ``coco``."""
    if img_ids is not None:
        unknown = [i for i in img_ids if i not in coco.images]
        if unknown:
            raise ResultsError(f"{coco.source}: image ids {unknown[:5]} are not in the ground truth")
    if cat_ids is not None:
        unknown = [c for c in cat_ids if c not in coco.cats]
        if unknown:
            raise ResultsError(f"{coco.source}: category ids {unknown[:5]} are not in the ground truth")


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array; torch itself is never imported here."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def detections_to_coco(
    image_id: int,
    det: Any,
    label_to_cat_id: Mapping[int, int] | Sequence[int],
) -> tuple[list[dict], list[dict]]:
    """One image's :class:`Detections` (original-image xyxy, contiguous labels) -> COCO result dicts.

    Returns ``(bbox_results, segm_results)``; ``segm_results`` is empty when ``det.masks`` is None. Masks may be
    ``(N, H, W)`` bitmaps or a list of RLE dicts; segm results carry no ``bbox`` and are scored with
    ``det.mask_scores`` when present (YOLACT++ mask re-scoring), else ``det.scores``.

    Raises:
        ResultsError: a label has no category id, or the numbers of boxes / scores / labels / masks differ.
    """
    from forge.ops.masks import as_rles

    boxes = to_numpy(det.boxes).astype(np.float64).reshape(-1, 4)
    scores = to_numpy(det.scores).astype(np.float64).reshape(-1)
    labels = to_numpy(det.labels).astype(np.int64).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n or labels.shape[0] != n:
        raise ResultsError(f"image {image_id}: {n} boxes but {scores.shape[0]} scores and {labels.shape[0]} labels")
    cat_ids = []
    for lab in labels.tolist():
        try:
            if lab < 0:  # a list would silently index from the end
                raise IndexError(lab)
            cat_ids.append(int(label_to_cat_id[lab]))
        except (KeyError, IndexError):
            raise ResultsError(
                f"image {image_id}: predicted label {lab} has no category id (the dataset has "
                f"{len(label_to_cat_id)} classes)"
            ) from None
    bbox_res = [
        {"image_id": image_id, "category_id": c, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
        for b, s, c in zip(boxes.tolist(), scores.tolist(), cat_ids)
    ]
    segm_res = []
    if det.masks is not None:
        rles = as_rles(det.masks)
        if len(rles) != n:
            raise ResultsError(f"image {image_id}: {len(rles)} masks for {n} detections")
        mscores = scores if det.mask_scores is None else to_numpy(det.mask_scores).astype(np.float64).reshape(-1)
        for rle, s, c in zip(rles, mscores.tolist(), cat_ids):
            segm_res.append({"image_id": image_id, "category_id": c, "segmentation": rle, "score": s})
    return bbox_res, segm_res
