"""COCO evaluation with faster-coco-eval's C++ engine, made pycocotools-exact: :func:`evaluate_coco`.

The engine (``COCOeval_faster``) computes IoUs, matches and accumulates; :mod:`.precision` then restores
pycocotools' ``1 - eps`` precision cells and :mod:`.summary` turns the arrays into the 12 summary numbers. Pure
Python + numpy + faster-coco-eval: nothing here imports torch or mmengine.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Sequence
from typing import Any

from forge.data.coco_reader import CocoAnnotations
from forge.evaluation.coco.precision import match_pycocotools_precision
from forge.evaluation.coco.results import check_ids, check_results, load_gt, load_results
from forge.evaluation.coco.summary import COCO_SUMMARY_NAMES, coco_summary, per_class
from forge.progress import Progress

__all__ = ["evaluate_coco", "gc_paused", "run_engine"]


def _silent(*_args: Any, **_kwargs: Any) -> None:
    pass


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Evaluation allocates ~10 dicts per detection; Python's cyclic GC would rescan them repeatedly."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_engine(
    dataset: dict,
    results: list[dict],
    iou_type: str,
    img_ids: Sequence[int] | None,
    max_dets: Sequence[int],
    lvis: bool = False,
    cat_ids: Sequence[int] | None = None,
    bar: Progress | None = None,
    own_results: bool = False,
) -> Any:
    """Evaluate with faster-coco-eval; returns the ``COCOeval_faster`` object after accumulate + precision fix.

    ``dataset`` is a validated ground-truth dict; ``results`` validated result dicts. Both are shallow-copied (the
    engine writes 'ignore'/'rle'/'id'/'area' into the dicts it is given), except the results with ``own_results``
    (the caller will not use those dicts again: copying 250k of them costs a noticeable share of a COCO run). In
    LVIS mode ``results`` must already follow the federated rule (see :mod:`forge.evaluation.lvis.engine`).
    ``bar`` shows the stages.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    gt_dict = {k: v for k, v in dataset.items() if k != "annotations"}
    gt_dict["annotations"] = [dict(a) for a in dataset["annotations"]]
    gt_api = COCO(gt_dict, print_function=_silent)
    dt_anns = results_with_areas(results, copy=not own_results)
    dt_api = COCO(print_function=_silent)
    dt_api.dataset = {
        "images": list(gt_dict["images"]),
        "categories": [dict(c) for c in gt_dict["categories"]],
        "annotations": dt_anns,
    }
    dt_api.createIndex()
    ev = COCOeval_faster(gt_api, dt_api, iou_type, print_function=_silent, lvis_style=lvis)
    if img_ids is not None:
        ev.params.imgIds = sorted({int(i) for i in img_ids})
    if cat_ids is not None:
        ev.params.catIds = sorted({int(c) for c in cat_ids})
    ev.params.maxDets = [int(m) for m in max_dets]
    if bar is not None:
        bar.update()
        bar.stage("IoU, matching, accumulation")
    ev.evaluate()
    ev.accumulate()
    if bar is not None:
        bar.update()
        bar.stage("exact precision")
    images = {img["id"]: img for img in dataset["images"]}
    match_pycocotools_precision(
        ev.eval.get("precision") if isinstance(ev.eval, dict) else None,
        ev.params,
        dataset["annotations"],
        dt_anns,
        images,
        iou_type,
        lvis=lvis,
    )
    if bar is not None:
        bar.update()
    return ev


def results_with_areas(results: list[dict], copy: bool = True) -> list[dict]:
    """``results`` with ``area``, ``id`` and ``iscrowd`` set as pycocotools' ``loadRes`` sets them.

    With ``copy`` (default) the dicts are shallow copies; without it they are updated in place.

    Rules: if the first result has a ``bbox``, every ``area`` is ``w * h``; else, if it has a ``segmentation``,
    ``area`` is the mask area and a missing ``bbox`` is the mask's box (batched: the library computes mask areas
    one by one). Ids are ``1..N``, ``iscrowd`` is 0. (The box-as-polygon ``segmentation`` that loadRes adds to box
    results is only used by segm evaluation of box-only results, which :func:`check_results` rejects.)
    """
    from faster_coco_eval.core import mask as mask_api

    if copy:
        anns = [dict(r, id=i, iscrowd=0) for i, r in enumerate(results, 1)]
    else:
        anns = results
        for i, r in enumerate(anns, 1):
            r["id"] = i
            r["iscrowd"] = 0
    if anns and "bbox" in anns[0] and anns[0]["bbox"] != []:
        for a in anns:
            box = a["bbox"]
            a["area"] = box[2] * box[3]
    elif anns and "segmentation" in anns[0]:
        rles = [a["segmentation"] for a in anns]
        areas = mask_api.area(rles).tolist()
        missing = [i for i, a in enumerate(anns) if "bbox" not in a]
        boxes = mask_api.toBbox([rles[i] for i in missing]).tolist() if missing else []
        for i, box in zip(missing, boxes):
            anns[i]["bbox"] = box
        for a, area in zip(anns, areas):
            a["area"] = area
    return anns


def evaluate_coco(
    gt: str | os.PathLike | dict | CocoAnnotations,
    results: str | os.PathLike | Sequence[dict],
    iou_type: str = "bbox",
    *,
    img_ids: Sequence[int] | None = None,
    classwise: bool = False,
    max_dets: Sequence[int] = (1, 10, 100),
    cat_ids: Sequence[int] | None = None,
) -> dict:
    """COCO AP of ``results`` against ``gt``, identical to pycocotools' ``COCOeval`` (evaluate/accumulate/summarize).

    Args:
        gt: COCO instances json path, dict or :class:`CocoAnnotations`.
        results: COCO result json path or list of result dicts (an empty list is fine: AP 0).
        iou_type: ``'bbox'`` or ``'segm'``.
        img_ids: evaluate only these images (default: every ground-truth image).
        classwise: add ``per_class`` (see :func:`forge.evaluation.coco.summary.per_class`).
        max_dets: pycocotools' ``maxDets`` (three values; the last one is used for AP).
        cat_ids: evaluate only these categories (default: all; a dataset trained on a class subset).

    Returns:
        ``{name: value for name in COCO_SUMMARY_NAMES}`` plus ``stats`` (the same 12 numbers, in order),
        ``num_images``, ``num_detections`` and optionally ``per_class``.

    Raises:
        AnnotationError / ResultsError naming the file and the entry at fault.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if len(max_dets) != 3:
        raise ValueError(f"max_dets must have 3 values (pycocotools' summary layout), got {list(max_dets)}")
    with gc_paused(), Progress(total=4, desc=f"coco {iou_type}", unit="step") as bar:
        # the helper's locals (millions of small objects) are freed before the collector is re-enabled, so that
        # re-enabling it does not scan them all once
        return _evaluate_coco(gt, results, iou_type, img_ids, classwise, max_dets, cat_ids, bar)


def _evaluate_coco(gt, results, iou_type: str, img_ids, classwise: bool, max_dets, cat_ids, bar: Progress) -> dict:
    bar.stage("reading")
    coco = load_gt(gt)
    dets, src = load_results(results)
    check_results(dets, coco, iou_type, src)
    check_ids(coco, img_ids, cat_ids)
    # dets are load_results' own dicts (parsed or copied there): the engine may update them in place
    ev = run_engine(coco.dataset, dets, iou_type, img_ids, max_dets, cat_ids=cat_ids, bar=bar, own_results=True)
    stats = coco_summary(ev.eval["precision"], ev.eval["recall"], ev.params.iouThrs)
    out: dict[str, Any] = dict(zip(COCO_SUMMARY_NAMES, stats))
    out["stats"] = stats
    out["num_images"] = len(ev.params.imgIds)
    out["num_detections"] = len(dets)
    if classwise:
        names = {c: cat["name"] for c, cat in coco.cats.items()}
        out["per_class"] = per_class(ev.eval["precision"], ev.params.iouThrs, ev.params.catIds, names)
    return out
