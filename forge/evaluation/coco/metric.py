"""COCO box / mask AP as an mmengine metric: :class:`CocoMetric` (mmdet ``CocoMetric`` behaviour).

This module imports mmengine (and so torch); the pure evaluation lives in :mod:`forge.evaluation.coco.engine`.

Ground truth (choose one):

* ``ann_file=...``: the COCO json the dataset was built from (recommended; exact official areas). Contiguous
  labels map to category ids via ``dataset_meta['cat_ids']`` when the dataset provides it, else via the file's
  sorted category ids (what :class:`forge.data.coco_reader.CocoAnnotations` does).
* ``ann_file=None``: every :class:`DetSample` must carry its ground truth **in original-image coordinates** as an
  :class:`Instances` in ``sample.meta.extra['ori_gt']`` (boxes xyxy, contiguous labels, ``iscrowd``, and bool masks
  at ``ori_shape`` for ``segm``). Areas are the mask pixel counts (box areas without masks) unless the dataset puts
  the official ones in ``sample.meta.extra['ori_gt_areas']`` (``(N,)`` floats). Category ids come from
  ``dataset_meta['cat_ids']`` (label -> id list) or default to ``label + 1``; names from ``dataset_meta['classes']``.

Distributed runs: ``process`` appends exactly one record per image, so mmengine's gather + truncation to
``len(dataset)`` works; duplicate image ids (padding) are dropped with a warning.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from forge.data.coco_reader import AnnotationError, CocoAnnotations
from forge.data.structures import Detections, DetSample, Instances
from forge.evaluation.coco.engine import evaluate_coco
from forge.evaluation.coco.results import detections_to_coco, to_numpy
from forge.evaluation.coco.summary import COCO_SUMMARY_NAMES, format_classwise_table, format_coco_table
from forge.ops.masks import as_rles, mask_to_rle, rle_area

__all__ = ["CocoMetric"]


class CocoMetric(BaseMetric):
    """COCO box/mask AP as an mmengine metric (mmdet ``CocoMetric`` behaviour; engine: :func:`evaluate_coco`).

    Args:
        ann_file: COCO instances json of the evaluated split, or None to build the ground truth from
            ``sample.meta.extra['ori_gt']`` (see the module docstring).
        metric: ``'bbox'``, ``'segm'`` or both.
        classwise: log a per-category AP table and add ``{metric}_{name}_precision`` keys.
        format_only: only write the result json files (test-dev submission) and return ``{}``.
        outfile_prefix: where result files go: ``{prefix}.bbox.json`` / ``{prefix}.segm.json`` (required with
            ``format_only``; optional otherwise).
        max_dets: pycocotools' ``maxDets``.
        round_digits: decimals of the returned numbers (mmdet: 3); None keeps full precision.
        collect_device, prefix: see :class:`mmengine.evaluator.BaseMetric`; keys read ``coco/bbox_mAP``,
            ``coco/segm_mAP_50``, ``coco/bbox_AR@100``, ...
    """

    default_prefix = "coco"
    _gt_class = CocoAnnotations

    def __init__(
        self,
        ann_file: str | None = None,
        metric: str | Sequence[str] = "bbox",
        classwise: bool = False,
        format_only: bool = False,
        outfile_prefix: str | None = None,
        max_dets: Sequence[int] = (1, 10, 100),
        round_digits: int | None = 3,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        for m in metrics:
            if m not in ("bbox", "segm"):
                raise ValueError(f"metric must be 'bbox' and/or 'segm', got {m!r}")
        if format_only and not outfile_prefix:
            raise ValueError("format_only=True needs outfile_prefix (where to write the result json files)")
        self.metrics = metrics
        self.classwise = classwise
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        self.max_dets = tuple(int(m) for m in max_dets)
        self.round_digits = round_digits
        self.ann_file = ann_file
        self._gt = None if ann_file is None else self._gt_class.load(ann_file, degenerate="keep")

    # ------------------------------------------------------------------ label <-> category id
    def _cat_ids(self) -> list[int]:
        meta = self.dataset_meta or {}
        if meta.get("cat_ids") is not None:
            ids = [int(c) for c in meta["cat_ids"]]
            if self._gt is not None:
                unknown = [c for c in ids if c not in self._gt.cats]
                if unknown:
                    raise AnnotationError(f"{self._gt.source}: dataset_meta['cat_ids'] has unknown ids {unknown[:5]}")
            return ids
        if self._gt is not None:
            return list(self._gt.cat_ids)
        n = len(meta["classes"]) if meta.get("classes") is not None else None
        if n is None:
            raise ValueError("CocoMetric without ann_file needs dataset_meta with 'classes' (and optionally 'cat_ids')")
        return list(range(1, n + 1))

    # ------------------------------------------------------------------ per-image records
    def process(self, data_batch: Any, data_samples: Sequence[DetSample]) -> None:
        want_masks = "segm" in self.metrics
        for sample in data_samples:
            if not isinstance(sample, DetSample):
                raise TypeError(f"CocoMetric expects DetSample predictions, got {type(sample).__name__}")
            meta, det = sample.meta, sample.pred
            if det is None:
                raise ValueError(f"image {meta.image_id}: DetSample.pred is None (run the model with mode='predict')")
            if want_masks and det.masks is None:
                raise ValueError(f"image {meta.image_id}: metric 'segm' needs predicted masks (Detections.masks)")
            rec: dict[str, Any] = {
                "img_id": int(meta.image_id),
                "ori_shape": tuple(int(v) for v in meta.ori_shape),
                "boxes": to_numpy(det.boxes).astype(np.float32).reshape(-1, 4),
                "scores": to_numpy(det.scores).astype(np.float32).reshape(-1),
                "labels": to_numpy(det.labels).astype(np.int64).reshape(-1),
                "mask_scores": None if det.mask_scores is None else to_numpy(det.mask_scores).astype(np.float32),
                "rles": as_rles(det.masks) if (want_masks and det.masks is not None) else None,
            }
            if self._gt is None:
                rec["gt"] = self._gt_record(meta, want_masks)
            self.results.append(rec)

    @staticmethod
    def _gt_record(meta, want_masks: bool) -> dict:
        gt = meta.extra.get("ori_gt")
        if not isinstance(gt, Instances):
            raise ValueError(
                f"image {meta.image_id}: CocoMetric(ann_file=None) needs the original-coordinate ground truth "
                "as an Instances in DetSample.meta.extra['ori_gt']"
            )
        boxes = to_numpy(gt.boxes).astype(np.float64).reshape(-1, 4)
        rles = None
        if want_masks:
            if gt.masks is None:
                raise ValueError(f"image {meta.image_id}: metric 'segm' needs masks in meta.extra['ori_gt']")
            rles = mask_to_rle(gt.masks)
        areas = meta.extra.get("ori_gt_areas")
        if areas is not None:
            areas = to_numpy(areas).astype(np.float64).reshape(-1)
        elif rles is not None:
            areas = rle_area(rles).astype(np.float64)
        elif gt.masks is not None:
            areas = to_numpy(gt.masks).reshape(len(boxes), -1).sum(1).astype(np.float64)
        else:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return {
            "boxes": boxes,
            "labels": to_numpy(gt.labels).astype(np.int64).reshape(-1),
            "iscrowd": (
                to_numpy(gt.iscrowd).astype(bool).reshape(-1) if gt.iscrowd is not None else np.zeros(len(boxes))
            ),
            "areas": areas,
            "rles": rles,
        }

    # ------------------------------------------------------------------ results -> json
    def _build_gt(self, results: list[dict], cat_ids: list[int]) -> CocoAnnotations:
        names = (self.dataset_meta or {}).get("classes") or [str(c) for c in cat_ids]
        images, anns = [], []
        for r in results:
            h, w = r["ori_shape"]
            images.append({"id": r["img_id"], "height": h, "width": w})
            g = r["gt"]
            for j in range(len(g["labels"])):
                x1, y1, x2, y2 = g["boxes"][j].tolist()
                lab = int(g["labels"][j])
                if not 0 <= lab < len(cat_ids):
                    raise AnnotationError(
                        f"image {r['img_id']}: ground-truth label {lab} outside 0..{len(cat_ids) - 1}"
                    )
                ann = {
                    "id": len(anns) + 1,
                    "image_id": r["img_id"],
                    "category_id": cat_ids[lab],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(g["areas"][j]),
                    "iscrowd": int(bool(g["iscrowd"][j])),
                }
                if g["rles"] is not None:
                    ann["segmentation"] = g["rles"][j]
                anns.append(ann)
        cats = [{"id": c, "name": str(n)} for c, n in zip(cat_ids, names)]
        return self._gt_class(
            {"images": images, "annotations": anns, "categories": cats}, "<dataset ground truth>", degenerate="keep"
        )

    def results_to_json(self, results: list[dict], cat_ids: list[int]) -> dict[str, list[dict]]:
        """Per-image records -> ``{'bbox': [...], 'segm': [...]}`` COCO result lists."""
        out: dict[str, list[dict]] = {"bbox": [], "segm": []}
        for r in results:
            det = Detections(
                boxes=r["boxes"],
                scores=r["scores"],
                labels=r["labels"],
                masks=r["rles"],
                mask_scores=r["mask_scores"],
            )
            b, s = detections_to_coco(r["img_id"], det, cat_ids)
            out["bbox"] += b
            out["segm"] += s
        return out

    def _write(self, jsons: dict[str, list[dict]], prefix: str) -> dict[str, str]:
        d = osp.dirname(prefix)
        if d:
            os.makedirs(d, exist_ok=True)
        files = {}
        for m in self.metrics:
            path = f"{prefix}.{m}.json"
            with open(path, "w") as f:
                json.dump(jsons[m], f)
            files[m] = path
        return files

    def _dedupe(self, results: list[dict]) -> list[dict]:
        seen, out = set(), []
        for r in results:
            if r["img_id"] in seen:
                continue
            seen.add(r["img_id"])
            out.append(r)
        if len(out) != len(results):
            warnings.warn(
                f"{type(self).__name__}: {len(results) - len(out)} duplicate image records dropped", stacklevel=2
            )
        return out

    def _round(self, v: float) -> float:
        return float(v) if self.round_digits is None else round(float(v), self.round_digits)

    def _evaluate(self, gt, dets: list[dict], iou_type: str, img_ids: list[int], cat_ids: list[int]) -> dict:
        return evaluate_coco(
            gt, dets, iou_type, img_ids=img_ids, classwise=self.classwise, max_dets=self.max_dets, cat_ids=cat_ids
        )

    _summary_names = COCO_SUMMARY_NAMES

    def compute_metrics(self, results: list) -> dict[str, float]:
        results = self._dedupe(results)
        cat_ids = self._cat_ids()
        jsons = self.results_to_json(results, cat_ids)
        if self.format_only or self.outfile_prefix:
            files = self._write(jsons, self.outfile_prefix)
            print_log(f"results written to {', '.join(files.values())}", logger="current")
            if self.format_only:
                return {}
        gt = self._gt if self._gt is not None else self._build_gt(results, cat_ids)
        img_ids = [r["img_id"] for r in results]
        out: dict[str, float] = {}
        for m in self.metrics:
            res = self._evaluate(gt, jsons[m], m, img_ids, cat_ids)
            print_log(
                "\n" + format_coco_table(res, self._summary_names, title=f"{self.default_prefix} {m}"),
                logger="current",
            )
            for name in self._summary_names:
                out[f"{m}_{name}"] = self._round(res[name])
            if self.classwise:
                print_log("\n" + format_classwise_table(res["per_class"]), logger="current")
                for c in res["per_class"]:
                    out[f"{m}_{c['name']}_precision"] = self._round(c["AP"])
        return out
