"""COCO box / mask AP, identical to pycocotools, and its mmengine metric (:class:`CocoMetric`).

Modules, one job each (all but ``metric`` are pure Python + numpy and never import torch or mmengine):

* :mod:`.results`: reading / validating result files, ``Detections`` -> COCO result dicts;
* :mod:`.engine`: :func:`evaluate_coco` on faster-coco-eval's C++ engine;
* :mod:`.precision`: the fix that makes the engine's precision equal pycocotools' bit for bit;
* :mod:`.summary`: the 12 summary numbers, per-class AP and the tables;
* :mod:`.metric`: :class:`CocoMetric` (mmengine; imported on first access of ``CocoMetric`` here).

Pure functions (they also back ``forge-eval coco``)::

    evaluate_coco(gt, results, iou_type='bbox', *, img_ids=None, classwise=False, max_dets=(1, 10, 100)) -> dict
    detections_to_coco(image_id, det, label_to_cat_id) -> (bbox_results, segm_results)
    load_results(results, name=None) -> (list[dict], source_name)
    format_coco_table(summary, names=COCO_SUMMARY_NAMES, title='') -> str
    format_classwise_table(per_class) -> str

``evaluate_coco`` returns the 12 numbers of ``pycocotools.COCOeval.summarize`` under :data:`COCO_SUMMARY_NAMES`
(``mAP, mAP_50, mAP_75, mAP_s, mAP_m, mAP_l, AR@1, AR@10, AR@100, AR_s@100, AR_m@100, AR_l@100``), the same list as
``stats``, and with ``classwise=True`` ``per_class``: one dict per category (``category_id, name, AP, AP50, AP75, APs,
APm, APl``; ``nan`` where the category has no ground truth). Values are fractions in ``[0, 1]``; ``-1`` means "no
ground truth to measure" exactly as in pycocotools.

Mask results written by :func:`detections_to_coco` carry no ``bbox`` so that COCO's loader derives their ``area``
from the mask and the small/medium/large buckets use the mask area (with a ``bbox`` present, pycocotools would use
the box area). The mask score is ``Detections.mask_scores`` when given (YOLACT++ mask re-scoring), else
``Detections.scores``.
"""

from __future__ import annotations

import importlib
from typing import Any

from forge.evaluation.coco.engine import evaluate_coco
from forge.evaluation.coco.results import ResultsError, detections_to_coco, load_results
from forge.evaluation.coco.summary import (
    AREA_LABELS,
    COCO_SUMMARY_NAMES,
    format_classwise_table,
    format_coco_table,
)

__all__ = [
    "AREA_LABELS",
    "COCO_SUMMARY_NAMES",
    "CocoMetric",  # noqa: F822 (imported on first access, see __getattr__)
    "ResultsError",
    "detections_to_coco",
    "evaluate_coco",
    "format_classwise_table",
    "format_coco_table",
    "load_results",
]


def __getattr__(name: str) -> Any:
    # CocoMetric needs mmengine (and so torch, seconds to import): loaded on first use so that forge-eval and the
    # pure functions start fast; `from forge.evaluation.coco import CocoMetric` and hydra `_target_` work as usual.
    if name == "CocoMetric":
        return importlib.import_module("forge.evaluation.coco.metric").CocoMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
