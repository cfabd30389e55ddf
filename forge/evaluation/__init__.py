"""Metrics (mmengine ``BaseMetric`` subclasses) and the pure evaluation functions behind ``forge-eval``.

Submodules are imported on first use so that importing one metric does not pull in every evaluation engine:
``forge.evaluation.coco`` (:class:`CocoMetric`, :func:`evaluate_coco`), ``forge.evaluation.lvis``
(:class:`LvisMetric`, :func:`evaluate_lvis`), ``forge.evaluation.crowdhuman`` (:class:`CrowdHumanMetric`,
:func:`evaluate_crowdhuman` = ``crowdhuman.evaluate``), and the other metric modules of the package. The evaluation
packages keep their mmengine metric in a ``metric`` submodule; everything else in them is numpy-only, so this
package and the pure functions never import torch or mmengine. Input-file errors: :mod:`forge.evaluation.errors`.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CocoMetric": ("forge.evaluation.coco", "CocoMetric"),
    "evaluate_coco": ("forge.evaluation.coco", "evaluate_coco"),
    "detections_to_coco": ("forge.evaluation.coco", "detections_to_coco"),
    "LvisMetric": ("forge.evaluation.lvis", "LvisMetric"),
    "evaluate_lvis": ("forge.evaluation.lvis", "evaluate_lvis"),
    "CrowdHumanMetric": ("forge.evaluation.crowdhuman", "CrowdHumanMetric"),
    "evaluate_crowdhuman": ("forge.evaluation.crowdhuman", "evaluate"),
    "EvalInputError": ("forge.evaluation.errors", "EvalInputError"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'forge.evaluation' has no attribute {name!r}")
