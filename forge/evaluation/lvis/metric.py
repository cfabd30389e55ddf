"""LVIS AP as an mmengine metric: :class:`LvisMetric` (mmdet ``LVISMetric`` behaviour).

Same options and record layout as :class:`forge.evaluation.coco.metric.CocoMetric` (keys ``lvis/bbox_AP``,
``lvis/segm_APr``, ...), but it always needs ``ann_file`` (the federated lists live there). Imports mmengine; the
pure evaluation is :func:`forge.evaluation.lvis.engine.evaluate_lvis`.
"""

from __future__ import annotations

from collections.abc import Sequence

from forge.data.coco_reader import LvisAnnotations
from forge.evaluation.coco.metric import CocoMetric
from forge.evaluation.lvis.engine import LVIS_SUMMARY_NAMES, evaluate_lvis

__all__ = ["LvisMetric"]


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
