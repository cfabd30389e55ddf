"""COCO summary numbers and tables, from an accumulated evaluation (``eval['precision']`` / ``eval['recall']``).

Layout of the arrays (pycocotools' ``COCOeval.accumulate``): ``precision (T, R, K, A, M)`` and ``recall (T, K, A,
M)`` over IoU thresholds, recall thresholds, categories, area ranges (all, small, medium, large) and ``maxDets``;
``-1`` marks "no ground truth". Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "AREA_LABELS",
    "COCO_SUMMARY_NAMES",
    "coco_summary",
    "format_classwise_table",
    "format_coco_table",
    "mean_valid",
    "per_class",
]

#: summary names, in the order of pycocotools' ``COCOeval.stats``
COCO_SUMMARY_NAMES = (
    "mAP",
    "mAP_50",
    "mAP_75",
    "mAP_s",
    "mAP_m",
    "mAP_l",
    "AR@1",
    "AR@10",
    "AR@100",
    "AR_s@100",
    "AR_m@100",
    "AR_l@100",
)
AREA_LABELS = ("all", "small", "medium", "large")


def mean_valid(s: np.ndarray) -> float:
    """Mean of the entries ``> -1`` (pycocotools' ``_summarize``), ``-1.0`` when there is none."""
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def coco_summary(precision: np.ndarray, recall: np.ndarray, iou_thrs: Sequence[float]) -> list[float]:
    """The 12 numbers of pycocotools' ``summarize`` (same slicing and means), in :data:`COCO_SUMMARY_NAMES` order.

    Args:
        precision: ``(T, R, K, A, M)``; recall: ``(T, K, A, M)``; iou_thrs: the ``T`` IoU thresholds.
    """
    thrs = np.asarray(iou_thrs)
    m_last = recall.shape[-1] - 1

    def ap(iou=None, area=0):
        s = precision if iou is None else precision[np.where(thrs == iou)[0]]
        return mean_valid(s[:, :, :, area, m_last])

    def ar(m, area=0):
        return mean_valid(recall[:, :, area, m])

    return [
        ap(),
        ap(0.5),
        ap(0.75),
        ap(area=1),
        ap(area=2),
        ap(area=3),
        ar(0),
        ar(min(1, m_last)),
        ar(min(2, m_last)),
        ar(m_last, 1),
        ar(m_last, 2),
        ar(m_last, 3),
    ]


def per_class(
    precision: np.ndarray, iou_thrs: Sequence[float], cat_ids: Sequence[int], names: Mapping[int, str]
) -> list[dict]:
    """Per-category AP (mmdet's classwise table): ``precision[..., k, area, last maxDets]`` means, nan if no GT.

    Returns one dict per category: ``category_id, name, AP, AP50, AP75, APs, APm, APl``.
    """
    thrs = np.asarray(iou_thrs)
    i50, i75 = np.where(thrs == 0.5)[0], np.where(thrs == 0.75)[0]

    def mean(s):
        v = s[s > -1]
        return float(np.mean(v)) if v.size else float("nan")

    out = []
    for k, cat in enumerate(cat_ids):
        pk = precision[:, :, k, :, -1]
        out.append(
            {
                "category_id": int(cat),
                "name": str(names[cat]),
                "AP": mean(pk[:, :, 0]),
                "AP50": mean(pk[i50, :, 0]),
                "AP75": mean(pk[i75, :, 0]),
                "APs": mean(pk[:, :, 1]),
                "APm": mean(pk[:, :, 2]),
                "APl": mean(pk[:, :, 3]),
            }
        )
    return out


def _fmt(v: float) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.3f}"


def format_coco_table(summary: Mapping[str, Any], names: Sequence[str] = COCO_SUMMARY_NAMES, title: str = "") -> str:
    """Two-column table ``name | value`` of the summary numbers (3 decimals)."""
    width = max(len(n) for n in names)
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  value")
    lines.append("-" * (width + 8))
    lines += [f"{n:<{width}}  {_fmt(float(summary[n]))}" for n in names]
    return "\n".join(lines)


def format_classwise_table(per_class: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> str:
    """Per-category table (category, AP, AP50, ...), 3 decimals, ``nan`` for categories without ground truth."""
    if not per_class:
        return "(no categories)"
    keys = list(keys or [k for k in per_class[0] if k not in ("category_id", "name")])
    width = max(8, max(len(str(c["name"])) for c in per_class))
    head = f"{'category':<{width}}  " + "  ".join(f"{k:>6}" for k in keys)
    rows = [f"{str(c['name']):<{width}}  " + "  ".join(f"{_fmt(float(c[k])):>6}" for k in keys) for c in per_class]
    return "\n".join([head, "-" * len(head), *rows])
