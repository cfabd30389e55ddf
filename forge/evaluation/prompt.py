"""Prompt-based segmentation metrics (SAM, EdgeSAM, OV-SAM): one GT object per prompt, one predicted mask per prompt.

Definitions (all values are fractions in ``[0, 1]``):

* per-prompt ``IoU = |pred & gt| / |pred | gt|``; a prompt whose predicted and GT masks are both empty has
  ``0 / 0 = NaN`` and is left out of every IoU mean (EdgeSAM ``evaluation/eval_mIoU.py`` drops NaNs the same way;
  OV-SAM's metric would count it as 0);
* ``mIoU`` is the mean over prompts (instances), not over classes, as in EdgeSAM and OV-SAM;
* size buckets use the GT area, COCO thresholds, half-open: small ``area < 32**2``, medium ``32**2 <= area < 96**2``,
  large ``area >= 96**2``. The area is the GT mask's pixel count at the resolution the masks are given in (evaluate at
  the original image size to match COCO), unless ``gt_areas`` supplies e.g. COCO's annotation ``area``. Note that
  pycocotools' ranges are closed, so an area of exactly 1024 or 9216 falls in two COCO buckets but in one here;
* recognition accuracy (OV-SAM): top-1 from ``pred_labels`` (or ``argmax`` of ``pred_scores`` when no labels are
  given), top-k (k=5) when ``pred_scores`` are given: the GT label is among the k highest scores;
* OV-SAM split: ``base`` = prompts whose GT class is not in ``novel_classes``, ``novel`` = the others; the novel
  classes are given as indices / names, or by LVIS frequency (``novel_frequencies=['r']``: the rare classes of
  ``dataset_meta['frequencies']``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from forge.data.class_names import class_indices

__all__ = [
    "SMALL_AREA",
    "MEDIUM_AREA",
    "SIZE_NAMES",
    "mask_iou",
    "size_bucket",
    "topk_correct",
    "prompt_record",
    "prompt_metrics",
    "PromptSegMetric",
]

SMALL_AREA = 32**2
MEDIUM_AREA = 96**2
SIZE_NAMES = ("small", "medium", "large")
_RESERVED = set(SIZE_NAMES) | {"base", "novel", "top5"}


def _tensor(value: Any, key: str) -> Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    elif isinstance(value, (list, tuple)):
        value = torch.as_tensor(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"{key} must be a tensor or array, got {type(value).__name__}")
    return value


def _masks(value: Any, key: str) -> Tensor:
    value = _tensor(value, key)
    if value.ndim != 3:
        raise ValueError(f"{key} must be (P, H, W), got shape {tuple(value.shape)}")
    if value.dtype.is_floating_point or value.is_complex():
        raise TypeError(f"{key} must be bool (threshold logits first), got dtype {value.dtype}")
    return value.bool()


def mask_iou(pred_masks: Tensor, gt_masks: Tensor) -> Tensor:
    """Per-prompt IoU of paired masks.

    Args:
        pred_masks: ``(P, H, W)`` bool.
        gt_masks: ``(P, H, W)`` bool.

    Returns:
        ``(P,)`` float64 on the masks' device; NaN where both masks are empty.
    """
    pred_masks, gt_masks = _masks(pred_masks, "pred_masks"), _masks(gt_masks, "gt_masks")
    if pred_masks.shape != gt_masks.shape:
        raise ValueError(f"pred_masks shape {tuple(pred_masks.shape)} != gt_masks shape {tuple(gt_masks.shape)}")
    gt_masks = gt_masks.to(pred_masks.device)
    p, g = pred_masks.flatten(1), gt_masks.flatten(1)
    inter = (p & g).sum(1, dtype=torch.int64)
    union = (p | g).sum(1, dtype=torch.int64)
    return inter.double() / union.double()  # 0/0 -> NaN


def size_bucket(areas: np.ndarray | Sequence[float]) -> np.ndarray:
    """COCO size bucket per area: 0 small (``< 32**2``), 1 medium (``< 96**2``), 2 large; ``(P,)`` int64."""
    areas = np.asarray(areas, dtype=np.float64)
    return (areas >= SMALL_AREA).astype(np.int64) + (areas >= MEDIUM_AREA).astype(np.int64)


def topk_correct(scores: Tensor, gt_labels: Tensor, k: int) -> Tensor:
    """``(P,)`` bool: GT label among the ``min(k, C)`` highest of ``scores`` ``(P, C)``."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == gt_labels.to(top.device)[:, None]).any(1)


def prompt_record(
    pred_masks: Tensor,
    gt_masks: Tensor,
    gt_labels: Tensor | None = None,
    pred_labels: Tensor | None = None,
    pred_scores: Tensor | None = None,
    dataset: str | None = None,
    gt_areas: Tensor | None = None,
    topk: int = 5,
) -> dict[str, Any]:
    """Reduce one image's prompts to small numpy arrays (what :class:`PromptSegMetric` stores per image).

    Args:
        pred_masks, gt_masks: ``(P, H, W)`` bool.
        gt_labels: ``(P,)`` int GT classes (needed for accuracy and the base/novel split).
        pred_labels: ``(P,)`` int predicted classes.
        pred_scores: ``(P, C)`` class scores (top-1 falls back to their argmax; enables top-k).
        dataset: dataset name for the per-dataset figures.
        gt_areas: ``(P,)`` areas for the size buckets; default the GT mask pixel counts.

    Returns:
        dict with ``iou`` ``(P,)`` float64, ``area`` ``(P,)`` float64, ``label`` ``(P,)`` int64 or None,
        ``top1`` / ``topk`` ``(P,)`` bool or None, ``dataset`` str or None.
    """
    iou = mask_iou(pred_masks, gt_masks)
    n = iou.shape[0]
    if gt_areas is None:
        area = _masks(gt_masks, "gt_masks").flatten(1).sum(1).cpu().numpy().astype(np.float64)
    else:
        area = _tensor(gt_areas, "gt_areas").reshape(-1).cpu().numpy().astype(np.float64)
        if area.shape[0] != n:
            raise ValueError(f"gt_areas has {area.shape[0]} entries for {n} prompts")

    def vec(value: Any, key: str) -> Tensor | None:
        if value is None:
            return None
        value = _tensor(value, key).reshape(-1)
        if value.shape[0] != n:
            raise ValueError(f"{key} has {value.shape[0]} entries for {n} prompts")
        return value.long()

    labels, plabels = vec(gt_labels, "gt_labels"), vec(pred_labels, "pred_labels")
    top1 = top5 = None
    if pred_scores is not None:
        pred_scores = _tensor(pred_scores, "pred_scores")
        if pred_scores.ndim != 2 or pred_scores.shape[0] != n:
            raise ValueError(f"pred_scores must be (P={n}, C), got shape {tuple(pred_scores.shape)}")
    if plabels is not None or pred_scores is not None:
        if labels is None:
            raise ValueError("pred_labels/pred_scores given without gt_labels: accuracy needs the GT classes")
        if plabels is None:
            plabels = pred_scores.argmax(1)
        top1 = (plabels.cpu() == labels.cpu()).numpy()
        if pred_scores is not None:
            top5 = topk_correct(pred_scores, labels, topk).cpu().numpy()
    if dataset is not None and not isinstance(dataset, str):
        raise TypeError(f"dataset must be a string, got {type(dataset).__name__}")
    return {
        "iou": iou.cpu().numpy(),
        "area": area,
        "label": None if labels is None else labels.cpu().numpy(),
        "top1": top1,
        "topk": top5,
        "dataset": dataset,
    }


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _cat(records: Sequence[Mapping], key: str) -> np.ndarray | None:
    parts = [r[key] for r in records if r.get(key) is not None]
    return np.concatenate(parts) if parts else None


def prompt_metrics(records: Sequence[Mapping], novel_classes: Sequence[int] | None = None) -> dict[str, float]:
    """Dataset-level figures from per-image records (see :func:`prompt_record`).

    Returns keys ``mIoU``, ``mIoU_small``, ``mIoU_medium``, ``mIoU_large`` (NaN for an empty bucket); ``acc`` and
    ``acc_top5`` when predictions carry classes/scores; ``mIoU_<dataset>`` (and ``acc_<dataset>``) per dataset name;
    ``mIoU_base``, ``mIoU_novel`` (and ``acc_base``, ``acc_novel``) when ``novel_classes`` is given.
    """
    out: dict[str, float] = {}
    iou = _cat(records, "iou")
    iou = np.zeros(0) if iou is None else iou
    out["mIoU"] = _mean(iou)
    bucket = size_bucket(_cat(records, "area") if records else np.zeros(0))
    for b, name in enumerate(SIZE_NAMES):
        out[f"mIoU_{name}"] = _mean(iou[bucket == b])

    top1, top5 = _cat(records, "top1"), _cat(records, "topk")
    if top1 is not None:
        out["acc"] = float(top1.mean()) if top1.size else float("nan")
    if top5 is not None:
        out["acc_top5"] = float(top5.mean()) if top5.size else float("nan")

    names = sorted({r["dataset"] for r in records if r.get("dataset") is not None})
    for name in names:
        if name in _RESERVED:
            raise ValueError(f"dataset name '{name}' collides with a metric key; rename the dataset")
        subset = [r for r in records if r.get("dataset") == name]
        out[f"mIoU_{name}"] = _mean(np.concatenate([r["iou"] for r in subset]))
        sub_top1 = _cat(subset, "top1")
        if sub_top1 is not None:
            out[f"acc_{name}"] = float(sub_top1.mean()) if sub_top1.size else float("nan")

    if novel_classes is not None:
        if any(r.get("label") is None for r in records):
            raise ValueError("novel_classes given but some images carry no gt_labels")
        labels = _cat(records, "label")
        labels = np.zeros(0, dtype=np.int64) if labels is None else labels
        novel = np.isin(labels, np.asarray(list(novel_classes), dtype=np.int64))
        out["mIoU_base"], out["mIoU_novel"] = _mean(iou[~novel]), _mean(iou[novel])
        if top1 is not None:
            if any(r.get("top1") is None for r in records):
                raise ValueError("novel_classes with accuracy needs class predictions on every image")
            for key, sel in (("acc_base", ~novel), ("acc_novel", novel)):
                out[key] = float(top1[sel].mean()) if sel.any() else float("nan")
    return out


def _get(sample: Any, key: str, required: bool = True) -> Any:
    if isinstance(sample, Mapping):
        if required and key not in sample:
            raise KeyError(f"data sample has no '{key}' (keys: {sorted(sample)})")
        return sample.get(key)
    if required and not hasattr(sample, key):
        raise KeyError(f"data sample of type {type(sample).__name__} has no '{key}'")
    return getattr(sample, key, None)


class PromptSegMetric(BaseMetric):
    """Per-prompt mask IoU (overall, per COCO size, per dataset, base/novel) and recognition accuracy.

    ``process`` contract: ``data_samples`` is a list with one dict per image holding

    * ``pred_masks``: ``(P, H, W)`` bool, one (already selected and thresholded) mask per prompt;
    * ``gt_masks``: ``(P, H, W)`` bool, the GT object of each prompt, same size;
    * optional ``gt_labels`` ``(P,)`` int, ``pred_labels`` ``(P,)`` int, ``pred_scores`` ``(P, C)`` float
      (accuracy needs ``gt_labels`` and one of the two predictions);
    * optional ``dataset`` (str) for ``mIoU_<dataset>``, optional ``gt_areas`` ``(P,)`` for the size buckets.

    One record per image (per-prompt IoU, area, label, top-1/top-5 correctness as small numpy arrays) is stored.

    Args:
        novel_classes: OV-SAM novel classes as indices or names in ``dataset_meta['classes']``; enables
            ``mIoU_base``, ``mIoU_novel``, ``acc_base``, ``acc_novel``.
        novel_frequencies: instead, the classes whose ``dataset_meta['frequencies']`` entry is one of these
            (LVIS: ``['r']``, rare = novel; frequent and common = base).
        topk: k of the top-k accuracy (reported as ``acc_top5`` whatever k is; keep the default).

    Keys: ``prompt/mIoU``, ``prompt/mIoU_small``, ``prompt/mIoU_medium``, ``prompt/mIoU_large``, ``prompt/acc``,
    ``prompt/acc_top5``, ``prompt/mIoU_<dataset>``, ``prompt/acc_<dataset>``, ``prompt/mIoU_base`` ...
    """

    default_prefix = "prompt"

    def __init__(
        self,
        novel_classes: Sequence[int | str] | None = None,
        topk: int = 5,
        novel_frequencies: Sequence[str] | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if novel_classes is not None and novel_frequencies is not None:
            raise ValueError("PromptSegMetric: give novel_classes or novel_frequencies, not both")
        self.novel_classes = None if novel_classes is None else list(novel_classes)
        self.novel_frequencies = None if novel_frequencies is None else [str(f) for f in novel_frequencies]
        self.topk = topk

    def _novel_indices(self) -> list[int] | None:
        if self.novel_frequencies is not None:
            freqs = (self.dataset_meta or {}).get("frequencies")
            if not freqs:
                raise ValueError("PromptSegMetric: novel_frequencies needs dataset_meta['frequencies'] (LVIS)")
            return [i for i, f in enumerate(freqs) if f in self.novel_frequencies]
        if self.novel_classes is None:
            return None
        names = list((self.dataset_meta or {}).get("classes") or [])
        return class_indices(self.novel_classes, names,
                             lambda c: f"PromptSegMetric: novel class '{c}' not in dataset_meta['classes']")

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        for sample in data_samples:
            self.results.append(
                prompt_record(
                    _get(sample, "pred_masks"),
                    _get(sample, "gt_masks"),
                    gt_labels=_get(sample, "gt_labels", False),
                    pred_labels=_get(sample, "pred_labels", False),
                    pred_scores=_get(sample, "pred_scores", False),
                    dataset=_get(sample, "dataset", False),
                    gt_areas=_get(sample, "gt_areas", False),
                    topk=self.topk,
                )
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        return prompt_metrics(results, self._novel_indices())
