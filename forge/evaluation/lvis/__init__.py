"""LVIS box / mask AP (federated evaluation), identical to ``lvis-api``, and its mmengine metric.

Modules: :mod:`.engine` (:func:`evaluate_lvis`, pure Python + numpy, never imports torch) and :mod:`.metric`
(:class:`LvisMetric`, mmengine; imported on first access of ``LvisMetric`` here).

API::

    evaluate_lvis(gt, results, iou_type='segm', *, max_dets=300, img_ids=None, classwise=False) -> dict

Returns the official ``lvis-api`` summary under :data:`LVIS_SUMMARY_NAMES` (``AP, AP50, AP75, APs, APm, APl, APr,
APc, APf, AR@300, ARs@300, ARm@300, ARl@300``), the same numbers as ``stats`` in that order, and optionally
``per_class`` (as :func:`forge.evaluation.coco.evaluate_coco`). The rules are listed in :mod:`.engine`.
"""

from __future__ import annotations

import importlib
from typing import Any

from forge.evaluation.lvis.engine import LVIS_SUMMARY_NAMES, evaluate_lvis

__all__ = ["LVIS_SUMMARY_NAMES", "LvisMetric", "evaluate_lvis"]  # noqa: F822 (LvisMetric: see __getattr__)


def __getattr__(name: str) -> Any:
    if name == "LvisMetric":  # mmengine (and torch) only when the metric is used
        return importlib.import_module("forge.evaluation.lvis.metric").LvisMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
