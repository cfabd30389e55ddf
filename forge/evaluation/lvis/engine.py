"""LVIS federated evaluation, identical to ``lvis-api``: :func:`evaluate_lvis` (pure Python + numpy).

The official rules (``lvis-api`` ``LVISEval`` / ``LVISResults``), reproduced exactly and checked against it in the
tests; the engine is faster-coco-eval's LVIS mode through :func:`forge.evaluation.coco.engine.run_engine` (the
``lvis`` package is not imported):

* at most ``max_dets`` (300) detections per image, the highest-scored ones (stable order on ties); a single
  ``maxDets`` value, used for AP and AR;
* a detection of a category that is neither annotated in the image nor in its ``neg_category_ids`` is dropped;
* an unmatched detection of a category in the image's ``not_exhaustive_category_ids`` is ignored;
* ground truth and detections with ``area <= 0`` are left out (``LVIS.get_ann_ids`` keeps ``0 < area < inf``);
* a detection's area is its box area when the results carry ``bbox`` (also for ``segm``!), else its mask area;
  :class:`~forge.evaluation.lvis.metric.LvisMetric` writes segm results without ``bbox`` so that mask areas are
  used;
* APr / APc / APf average the categories of frequency ``r`` / ``c`` / ``f``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from forge.data.coco_reader import LvisAnnotations
from forge.evaluation.coco.engine import gc_paused, run_engine
from forge.evaluation.coco.results import check_ids, check_results, load_gt, load_results
from forge.evaluation.coco.summary import mean_valid, per_class
from forge.progress import Progress

__all__ = ["LVIS_SUMMARY_NAMES", "evaluate_lvis", "limit_per_image", "lvis_summary", "result_areas"]

LVIS_SUMMARY_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "APr",
    "APc",
    "APf",
    "AR@300",
    "ARs@300",
    "ARm@300",
    "ARl@300",
)


def limit_per_image(dets: list[dict], max_dets: int) -> list[dict]:
    """Keep the ``max_dets`` best detections of each image; images grouped in order of first appearance."""
    by_img: dict[Any, list[dict]] = {}
    for d in dets:
        by_img.setdefault(d["image_id"], []).append(d)
    out = []
    for anns in by_img.values():
        if len(anns) > max_dets:
            anns = sorted(anns, key=lambda a: a["score"], reverse=True)[:max_dets]
        out.extend(anns)
    return out


def result_areas(dets: list[dict]) -> np.ndarray:
    """``(N,)`` areas as ``LVISResults`` computes them: box area if the results carry ``bbox``, else mask area."""
    from faster_coco_eval.core import mask as mask_api

    if not dets:
        return np.zeros(0)
    if "bbox" in dets[0]:
        return np.array([d["bbox"][2] * d["bbox"][3] for d in dets], dtype=np.float64)
    rles = [d["segmentation"] for d in dets]
    rles = [r if isinstance(r["counts"], str) else {"size": r["size"], "counts": r["counts"].decode()} for r in rles]
    return np.asarray(mask_api.area(rles), dtype=np.float64)


def lvis_summary(
    precision: np.ndarray, recall: np.ndarray, iou_thrs: Sequence[float], cat_ids: Sequence[int], lvis: LvisAnnotations
) -> list[float]:
    """The 13 numbers of :data:`LVIS_SUMMARY_NAMES` from ``precision (T, R, K, A, 1)`` and ``recall (T, K, A, 1)``."""
    prec, rec = precision[..., 0], recall[..., 0]  # (T, R, K, A), (T, K, A)
    thrs = np.asarray(iou_thrs)
    groups = {f: [k for k, c in enumerate(cat_ids) if lvis.cat_frequency[c] == f] for f in "rcf"}

    def ap(iou=None, area=0, cats=None):
        s = prec if iou is None else prec[np.where(thrs == iou)[0]]
        s = s[:, :, :, area] if cats is None else s[:, :, cats, area]
        return mean_valid(s)

    return [
        ap(),
        ap(0.5),
        ap(0.75),
        ap(area=1),
        ap(area=2),
        ap(area=3),
        ap(cats=groups["r"]),
        ap(cats=groups["c"]),
        ap(cats=groups["f"]),
        mean_valid(rec[:, :, 0]),
        mean_valid(rec[:, :, 1]),
        mean_valid(rec[:, :, 2]),
        mean_valid(rec[:, :, 3]),
    ]


def evaluate_lvis(
    gt: str | os.PathLike | dict | LvisAnnotations,
    results: str | os.PathLike | Sequence[dict],
    iou_type: str = "segm",
    *,
    max_dets: int = 300,
    img_ids: Sequence[int] | None = None,
    classwise: bool = False,
    cat_ids: Sequence[int] | None = None,
) -> dict:
    """LVIS AP of ``results`` against ``gt``, identical to ``lvis-api``'s ``LVISEval`` (see the module docstring).

    Args:
        gt: LVIS json path, dict or :class:`LvisAnnotations`.
        results: COCO-format result json path or list (empty: AP 0).
        iou_type: ``'bbox'`` or ``'segm'``.
        max_dets: detections kept per image (official: 300).
        img_ids: evaluate only these images (default: all).
        classwise: add ``per_class``.
        cat_ids: evaluate only these categories (default: all).

    Returns:
        ``{name: value for name in LVIS_SUMMARY_NAMES}`` plus ``stats`` (the same 13 numbers), ``num_images``,
        ``num_detections`` (after the federated filtering) and optionally ``per_class``.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    with gc_paused(), Progress(total=4, desc=f"lvis {iou_type}", unit="step") as bar:
        return _evaluate_lvis(gt, results, iou_type, max_dets, img_ids, classwise, cat_ids, bar)


def _evaluate_lvis(gt, results, iou_type: str, max_dets: int, img_ids, classwise: bool, cat_ids, bar: Progress) -> dict:
    bar.stage("reading")
    lvis = load_gt(gt, LvisAnnotations)
    dets, src = load_results(results)
    check_results(dets, lvis, iou_type, src)
    check_ids(lvis, img_ids, cat_ids)
    if max_dets >= 0:
        dets = limit_per_image(dets, int(max_dets))
    areas = result_areas(dets)
    dets = [d for d, a in zip(dets, areas) if 0 < a < np.inf]
    dataset = dict(lvis.dataset)
    dataset["annotations"] = [a for a in lvis.dataset["annotations"] if 0 < a["area"] < np.inf]
    # Federated rule applied here rather than in the engine: faster-coco-eval 1.8 crashes on segm when every
    # detection of an image is dropped (it never records that image's size). Same result either way, and
    # the exact-precision fix then sees exactly the detections the engine evaluates.
    known = {(a["image_id"], a["category_id"]) for a in dataset["annotations"]}
    known.update((img["id"], c) for img in dataset["images"] for c in img["neg_category_ids"])
    dets = [d for d in dets if (d["image_id"], d["category_id"]) in known]
    ev = run_engine(
        dataset, dets, iou_type, img_ids, [int(max_dets)], lvis=True, cat_ids=cat_ids, bar=bar, own_results=True
    )
    prec, rec, params = ev.eval["precision"], ev.eval["recall"], ev.params
    stats = lvis_summary(prec, rec, params.iouThrs, params.catIds, lvis)
    out: dict[str, Any] = dict(zip(LVIS_SUMMARY_NAMES, stats))
    out["stats"] = stats
    out["num_images"] = len(params.imgIds)
    out["num_detections"] = len(dets)
    if classwise:
        names = {c: cat["name"] for c, cat in lvis.cats.items()}
        out["per_class"] = per_class(prec, params.iouThrs, params.catIds, names)
    return out
