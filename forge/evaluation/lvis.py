"""LVIS box / mask AP (federated evaluation): a pure function and an mmengine metric (:class:`LvisMetric`).

API::

    evaluate_lvis(gt, results, iou_type='segm', *, max_dets=300, img_ids=None, classwise=False) -> dict

Returns the official ``lvis-api`` summary under :data:`LVIS_SUMMARY_NAMES` (``AP, AP50, AP75, APs, APm, APl, APr,
APc, APf, AR@300, ARs@300, ARm@300, ARl@300``), the same numbers as ``stats`` in that order, and optionally
``per_class`` (as :func:`forge.evaluation.coco.evaluate_coco`).

The official rules (``lvis-api`` ``LVISEval`` / ``LVISResults``), reproduced exactly and checked against it in the
tests; the engine is faster-coco-eval's LVIS mode (the ``lvis`` package is not imported):

* at most ``max_dets`` (300) detections per image, the highest-scored ones (stable order on ties); a single
  ``maxDets`` value, used for AP and AR;
* a detection of a category that is neither annotated in the image nor in its ``neg_category_ids`` is dropped;
* an unmatched detection of a category in the image's ``not_exhaustive_category_ids`` is ignored;
* ground truth and detections with ``area <= 0`` are left out (``LVIS.get_ann_ids`` keeps ``0 < area < inf``);
* a detection's area is its box area when the results carry ``bbox`` (also for ``segm``!), else its mask area;
  :class:`LvisMetric` writes segm results without ``bbox`` so that mask areas are used;
* APr / APc / APf average the categories of frequency ``r`` / ``c`` / ``f``.

:class:`LvisMetric` has the same options and record layout as :class:`forge.evaluation.coco.CocoMetric`
(keys ``lvis/bbox_AP``, ``lvis/segm_APr``, ...), but always needs ``ann_file`` (the federated lists live there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from forge.data.coco_reader import LvisAnnotations
from forge.evaluation.coco import (
    _check_ids,
    _check_results,
    _gc_paused,
    _load_gt,
    _mean_valid,
    _per_class,
    _run_engine,
    load_results,
)

__all__ = ["LVIS_SUMMARY_NAMES", "LvisMetric", "evaluate_lvis"]  # noqa: F822 (LvisMetric: see __getattr__)

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


def _limit_per_image(dets: list[dict], max_dets: int) -> list[dict]:
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


def _result_areas(dets: list[dict]) -> np.ndarray:
    from faster_coco_eval.core import mask as mask_api

    if not dets:
        return np.zeros(0)
    if "bbox" in dets[0]:
        return np.array([d["bbox"][2] * d["bbox"][3] for d in dets], dtype=np.float64)
    rles = [d["segmentation"] for d in dets]
    rles = [r if isinstance(r["counts"], str) else {"size": r["size"], "counts": r["counts"].decode()} for r in rles]
    return np.asarray(mask_api.area(rles), dtype=np.float64)


def _lvis_summary(ev, lvis: LvisAnnotations) -> list[float]:
    p = ev.params
    prec, rec = ev.eval["precision"][..., 0], ev.eval["recall"][..., 0]  # (T, R, K, A), (T, K, A)
    thrs = np.asarray(p.iouThrs)
    groups = {f: [k for k, c in enumerate(p.catIds) if lvis.cat_frequency[c] == f] for f in "rcf"}

    def ap(iou=None, area=0, cats=None):
        s = prec if iou is None else prec[np.where(thrs == iou)[0]]
        s = s[:, :, :, area] if cats is None else s[:, :, cats, area]
        return _mean_valid(s)

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
        _mean_valid(rec[:, :, 0]),
        _mean_valid(rec[:, :, 1]),
        _mean_valid(rec[:, :, 2]),
        _mean_valid(rec[:, :, 3]),
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
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    with _gc_paused():
        return _evaluate_lvis(gt, results, iou_type, max_dets, img_ids, classwise, cat_ids)


def _evaluate_lvis(gt, results, iou_type: str, max_dets: int, img_ids, classwise: bool, cat_ids) -> dict:
    lvis = _load_gt(gt, LvisAnnotations)
    dets, src = load_results(results)
    _check_results(dets, lvis, iou_type, src)
    _check_ids(lvis, img_ids, cat_ids)
    if max_dets >= 0:
        dets = _limit_per_image(dets, int(max_dets))
    areas = _result_areas(dets)
    dets = [d for d, a in zip(dets, areas) if 0 < a < np.inf]
    dataset = dict(lvis.dataset)
    dataset["annotations"] = [a for a in lvis.dataset["annotations"] if 0 < a["area"] < np.inf]
    # Federated rule applied here rather than in the engine: faster-coco-eval 1.8 crashes on segm when every
    # detection of an image is dropped (it never records that image's size). Same result either way.
    known = {(a["image_id"], a["category_id"]) for a in dataset["annotations"]}
    known.update((img["id"], c) for img in dataset["images"] for c in img["neg_category_ids"])
    dets = [d for d in dets if (d["image_id"], d["category_id"]) in known]
    ev = _run_engine(dataset, dets, iou_type, img_ids, [int(max_dets)], lvis=True, cat_ids=cat_ids)
    stats = _lvis_summary(ev, lvis)
    out: dict[str, Any] = dict(zip(LVIS_SUMMARY_NAMES, stats))
    out["stats"] = stats
    out["num_images"] = len(ev.params.imgIds)
    out["num_detections"] = len(dets)
    if classwise:
        out["per_class"] = _per_class(ev, lvis)
    return out


# Defined on first access, like forge.evaluation.coco.CocoMetric (keeps mmengine/torch out of the pure path).
def _define_lvis_metric() -> type:
    from forge.evaluation.coco import CocoMetric

    class LvisMetric(CocoMetric):
        """LVIS AP as an mmengine metric (mmdet ``LVISMetric`` behaviour; engine: :func:`evaluate_lvis`).

        Args:
            ann_file: the LVIS json of the evaluated split (required).
            metric, classwise, format_only, outfile_prefix, round_digits, collect_device, prefix: as
                :class:`forge.evaluation.coco.CocoMetric`.
            max_dets: detections kept per image (300).
        """

        default_prefix = "lvis"
        _gt_class = LvisAnnotations
        _summary_names = LVIS_SUMMARY_NAMES

        def __init__(
            self,
            ann_file: str,
            metric: str | Sequence[str] = "bbox",
            classwise: bool = False,
            format_only: bool = False,
            outfile_prefix: str | None = None,
            max_dets: int = 300,
            round_digits: int | None = 3,
            collect_device: str = "cpu",
            prefix: str | None = None,
        ) -> None:
            if ann_file is None:
                raise ValueError("LvisMetric needs ann_file: the federated lists (neg/not-exhaustive) live there")
            super().__init__(
                ann_file=ann_file,
                metric=metric,
                classwise=classwise,
                format_only=format_only,
                outfile_prefix=outfile_prefix,
                max_dets=(1, 10, 100),
                round_digits=round_digits,
                collect_device=collect_device,
                prefix=prefix,
            )
            self.max_dets = int(max_dets)

        def _evaluate(self, gt, dets: list[dict], iou_type: str, img_ids: list[int], cat_ids: list[int]) -> dict:
            return evaluate_lvis(
                gt,
                dets,
                iou_type,
                max_dets=self.max_dets,
                img_ids=img_ids,
                classwise=self.classwise,
                cat_ids=cat_ids,
            )

    LvisMetric.__module__ = __name__
    LvisMetric.__qualname__ = "LvisMetric"
    return LvisMetric


def __getattr__(name: str) -> Any:
    if name == "LvisMetric":
        cls = _define_lvis_metric()
        globals()["LvisMetric"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
