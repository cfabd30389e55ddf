"""Metrics (mmengine ``BaseMetric`` subclasses) and the pure evaluation functions behind ``forge-eval``.

Submodules are imported on first use so that importing one metric does not pull in every evaluation engine:
``forge.evaluation.coco`` (:class:`CocoMetric`, :func:`evaluate_coco`), ``forge.evaluation.lvis``
(:class:`LvisMetric`, :func:`evaluate_lvis`), and the other metric modules of the package.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CocoMetric": "forge.evaluation.coco",
    "evaluate_coco": "forge.evaluation.coco",
    "detections_to_coco": "forge.evaluation.coco",
    "LvisMetric": "forge.evaluation.lvis",
    "evaluate_lvis": "forge.evaluation.lvis",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'forge.evaluation' has no attribute {name!r}")
