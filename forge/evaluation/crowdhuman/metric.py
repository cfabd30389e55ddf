"""CrowdHuman AP / MR^-2 / JI / recall as an mmengine metric: :class:`CrowdHumanMetric` (imports mmengine)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from forge.data.crowdhuman_reader import BOX_TYPES, DTRecord, GTRecord, read_gt_odgt
from forge.evaluation.crowdhuman.api import evaluate, format_table

__all__ = ["CrowdHumanMetric"]


def _sample_id(meta: Any) -> str:
    extra = getattr(meta, "extra", None) or {}
    if "ID" in extra:
        return str(extra["ID"])
    name = getattr(meta, "file_name", "")
    if name:
        return os.path.splitext(os.path.basename(name))[0]
    raise ValueError("CrowdHumanMetric: a sample's meta has neither extra['ID'] nor a file_name")


class CrowdHumanMetric(BaseMetric):
    """CrowdHuman AP / MR^-2 / JI / recall as an mmengine metric.

    ``process`` takes a list of :class:`forge.data.structures.DetSample` whose ``pred`` is a ``Detections`` in
    original-image coordinates (xyxy) and whose ``meta.extra['ID']`` is the CrowdHuman ``ID`` (falling back to the
    file name without extension). One result entry is stored per image (ID, xywh float64 boxes, scores, the
    ``ori_shape`` size), so mmengine's distributed gather and truncation to the dataset size work as usual.
    ``compute_metrics`` reads the GT from ``ann_file`` (cached) and runs :func:`evaluate`.

    Args:
        ann_file: ground-truth ``.odgt``.
        box_type: ``fbox`` / ``vbox`` / ``hbox``.
        label: keep only predictions of this class index (None keeps all; CrowdHuman person models have one).
        only_processed: evaluate only the GT images that were processed (else unprocessed images count as images
            without detections).
        log_table: print :func:`format_table` through the mmengine logger.
        **options: forwarded to :func:`evaluate` (``matching``, ``mr_sampling``, ...).

    Keys: ``crowdhuman/AP``, ``crowdhuman/MR-2``, ``crowdhuman/JI``, ``crowdhuman/recall`` (prefix ``crowdhuman``
    unless ``prefix`` is given).
    """

    default_prefix = "crowdhuman"

    def __init__(
        self,
        ann_file: str,
        box_type: str = "fbox",
        label: int | None = None,
        only_processed: bool = True,
        log_table: bool = True,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if box_type not in BOX_TYPES:
            raise ValueError(f"box_type must be one of {BOX_TYPES}, got {box_type!r}")
        self.ann_file = ann_file
        self.box_type = box_type
        self.label = label
        self.only_processed = only_processed
        self.log_table = log_table
        self.options = options
        self._gt: list[GTRecord] | None = None

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            pred = sample.pred
            if pred is None:
                raise ValueError("CrowdHumanMetric: a sample has no prediction (pred is None)")
            boxes = pred.boxes.detach().cpu().double().numpy().reshape(-1, 4)
            scores = pred.scores.detach().cpu().double().numpy().reshape(-1)
            if self.label is not None:
                keep = pred.labels.detach().cpu().numpy().reshape(-1) == self.label
                boxes, scores = boxes[keep], scores[keep]
            xywh = boxes.copy()
            xywh[:, 2:4] -= xywh[:, 0:2]
            h, w = (int(v) for v in sample.meta.ori_shape)
            self.results.append(
                dict(
                    ID=_sample_id(sample.meta),
                    boxes=xywh,
                    scores=scores,
                    width=w if w > 0 else None,
                    height=h if h > 0 else None,
                )
            )

    def compute_metrics(self, results: list) -> dict:
        if self._gt is None:
            self._gt = read_gt_odgt(self.ann_file)
        dts, seen = [], set()
        for r in results:
            if r["ID"] in seen:  # duplicates cannot come from mmengine's gather; keep the first defensively
                continue
            seen.add(r["ID"])
            dts.append(
                DTRecord(
                    ID=r["ID"],
                    boxes=np.asarray(r["boxes"], dtype=np.float64).reshape(-1, 4),
                    scores=np.asarray(r["scores"], dtype=np.float64).reshape(-1),
                    width=r.get("width"),
                    height=r.get("height"),
                    source="<CrowdHumanMetric>",
                )
            )
        gts = [g for g in self._gt if g.ID in seen] if self.only_processed else self._gt
        res = evaluate(gts, dts, box_type=self.box_type, **self.options)
        if self.log_table:
            print_log("\n" + format_table(res), logger="current")
        return {k: float(v) for k, v in res.items() if k in ("AP", "MR-2", "JI", "recall")} | {
            k: float(v) for k, v in res.items() if k.startswith("JI@")
        }
