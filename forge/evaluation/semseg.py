"""Semantic segmentation metrics: confusion matrix, IoU, accuracies and the zero-shot seen/unseen split.

Definitions follow mmsegmentation's ``IoUMetric`` (all values are fractions in ``[0, 1]``, not percentages):

* pixels whose ground truth equals ``ignore_index`` are dropped before anything is counted;
* ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``; a class absent from both GT and prediction has ``0 / 0 = NaN``;
* ``Acc_c = TP_c / #GT_c`` (per-class recall); a class absent from the GT is NaN (even if it was predicted);
* ``mIoU`` and ``mAcc`` are NaN-ignoring means over classes; ``aAcc = sum_c TP_c / #valid pixels``;
* zero-shot split (ZS3Net / MaskCLIP+ protocol): ``mIoU_seen`` and ``mIoU_unseen`` are NaN-ignoring means of the
  per-class IoU over the seen (= every class not listed as unseen) and unseen classes, and
  ``hIoU = 2 * s * u / (s + u)``.

The confusion matrix is ``(C, C)`` int64 with rows = ground truth, columns = prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from torch import Tensor

from forge.data.class_names import class_indices

__all__ = [
    "confusion_matrix",
    "iou_from_confusion",
    "acc_from_confusion",
    "harmonic_mean",
    "zero_shot_split",
    "semseg_metrics",
    "format_class_table",
    "SemSegMetric",
]


def _as_label_map(value: Any, key: str) -> Tensor:
    """Accept ``(H, W)`` or ``(1, H, W)`` integer tensors/arrays (or objects with ``.data``, e.g. mmseg PixelData)."""
    if hasattr(value, "data") and not isinstance(value, (Tensor, np.ndarray)):
        value = value.data
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"{key} must be a tensor or array, got {type(value).__name__}")
    if value.ndim == 3 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 2:
        raise ValueError(f"{key} must be (H, W), got shape {tuple(value.shape)}")
    if value.dtype.is_floating_point or value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{key} must hold integer class indices, got dtype {value.dtype}")
    return value.long()


def confusion_matrix(pred: Tensor, gt: Tensor, num_classes: int, ignore_index: int | None = 255) -> Tensor:
    """Confusion matrix of one image (or any batch of pixels).

    Args:
        pred: ``(H, W)`` (any shape) int class indices in ``[0, C)``.
        gt: same shape as ``pred``; int class indices in ``[0, C)`` or ``ignore_index``.
        num_classes: ``C``.
        ignore_index: GT value to skip (prediction at those pixels is not looked at); None to skip nothing.

    Returns:
        ``(C, C)`` int64 on ``pred``'s device; ``[g, p]`` counts pixels of GT class ``g`` predicted as ``p``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(gt.shape)}")
    pred = pred.reshape(-1).long()
    gt = gt.reshape(-1).to(pred.device).long()
    if ignore_index is not None:
        keep = gt != ignore_index
        pred, gt = pred[keep], gt[keep]
    if gt.numel():
        # one min/max sync per image; out-of-range values would silently land in the wrong cell
        for name, v in (("ground truth", gt), ("prediction", pred)):
            lo, hi = int(v.min()), int(v.max())
            if lo < 0 or hi >= num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} holds class index {bad} outside [0, {num_classes}) (ignore_index={ignore_index})"
                )
    counts = torch.bincount(gt * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _np(conf: Tensor | np.ndarray) -> np.ndarray:
    conf = conf.detach().cpu().numpy() if isinstance(conf, Tensor) else np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C), got shape {conf.shape}")
    return conf.astype(np.float64)


def iou_from_confusion(conf: Tensor | np.ndarray) -> np.ndarray:
    """Per-class IoU ``(C,)`` float64; NaN for classes absent from both GT and prediction."""
    c = _np(conf)
    tp = np.diag(c)
    union = c.sum(0) + c.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / union


def acc_from_confusion(conf: Tensor | np.ndarray) -> np.ndarray:
    """Per-class accuracy (recall) ``(C,)`` float64; NaN for classes absent from the GT."""
    c = _np(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diag(c) / c.sum(1)


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def harmonic_mean(seen: float, unseen: float) -> float:
    """``hIoU = 2 s u / (s + u)``; 0 when both are 0, NaN when either is NaN."""
    if math.isnan(seen) or math.isnan(unseen):
        return float("nan")
    if seen + unseen == 0:
        return 0.0
    return 2.0 * seen * unseen / (seen + unseen)


def _unseen_mask(num_classes: int, unseen_classes: Sequence[int]) -> np.ndarray:
    mask = np.zeros(num_classes, dtype=bool)
    for c in unseen_classes:
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"unseen class index {c} outside [0, {num_classes})")
        mask[int(c)] = True
    return mask


def zero_shot_split(iou: np.ndarray, unseen_classes: Sequence[int]) -> tuple[float, float, float]:
    """``(mIoU_seen, mIoU_unseen, hIoU)`` from per-class IoU ``(C,)``; seen = every class not in ``unseen_classes``."""
    iou = np.asarray(iou, dtype=np.float64)
    unseen = _unseen_mask(iou.shape[0], unseen_classes)
    s, u = _nanmean(iou[~unseen]), _nanmean(iou[unseen])
    return s, u, harmonic_mean(s, u)


def semseg_metrics(conf: Tensor | np.ndarray, unseen_classes: Sequence[int] | None = None) -> dict[str, Any]:
    """All figures from an accumulated confusion matrix ``(C, C)``.

    Returns:
        ``aAcc``, ``mIoU``, ``mAcc`` (floats), ``IoU`` and ``Acc`` (per-class ``(C,)`` arrays), and, when
        ``unseen_classes`` is given, ``mIoU_seen``, ``mIoU_unseen``, ``hIoU``.
    """
    c = _np(conf)
    iou, acc = iou_from_confusion(c), acc_from_confusion(c)
    total = c.sum()
    out: dict[str, Any] = {
        "aAcc": float(np.trace(c) / total) if total else float("nan"),
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "IoU": iou,
        "Acc": acc,
    }
    if unseen_classes is not None:
        out["mIoU_seen"], out["mIoU_unseen"], out["hIoU"] = zero_shot_split(iou, unseen_classes)
    return out


def format_class_table(
    iou: np.ndarray, acc: np.ndarray, class_names: Sequence[str] | None = None, unseen: Sequence[int] = ()
) -> str:
    """Plain-text per-class table (percentages); unseen classes are marked with ``*``."""
    n = len(iou)
    if class_names is not None and len(class_names) == n:
        names = [str(x) for x in class_names]
    else:
        names = [str(i) for i in range(n)]
    unseen_set = {int(u) for u in unseen}
    names = [f"{name}*" if i in unseen_set else name for i, name in enumerate(names)]
    width = max([5] + [len(x) for x in names])
    lines = [f"{'Class':<{width}} | {'IoU':>6} | {'Acc':>6}", f"{'-' * width}-+--------+-------"]
    for name, i, a in zip(names, iou, acc):
        lines.append(f"{name:<{width}} | {i * 100:6.2f} | {a * 100:6.2f}")
    return "\n".join(lines)


def _get(sample: Any, key: str) -> Any:
    if isinstance(sample, Mapping):
        if key not in sample:
            raise KeyError(f"data sample has no '{key}' (keys: {sorted(sample)})")
        return sample[key]
    if not hasattr(sample, key):
        raise KeyError(f"data sample of type {type(sample).__name__} has no '{key}'")
    return getattr(sample, key)


class SemSegMetric(BaseMetric):
    """mIoU / aAcc / mAcc (+ zero-shot seen/unseen/hIoU) over a dataset.

    ``process`` contract: ``data_samples`` is a list with one dict per image holding

    * ``pred_sem_seg``: ``(H, W)`` int tensor of predicted class indices in ``[0, C)`` (``(1, H, W)`` and objects
      with a ``.data`` tensor, e.g. mmseg ``PixelData``, are accepted too);
    * ``gt_sem_seg``: ``(H, W)`` int tensor, same size, class indices or ``ignore_index``.

    Each image is stored as its own ``(C, C)`` int64 numpy confusion matrix (cheap to gather across ranks compared
    with label maps); ``compute_metrics`` sums them.

    Args:
        num_classes: ``C``; None to take ``len(dataset_meta['classes'])``.
        ignore_index: GT value excluded from every count.
        unseen_classes: zero-shot unseen classes, as indices or as names found in ``dataset_meta['classes']``;
            enables ``mIoU_seen``, ``mIoU_unseen`` and ``hIoU``.
        log_table: print the per-class table through the current mmengine logger.

    Keys: ``semseg/mIoU``, ``semseg/aAcc``, ``semseg/mAcc`` and ``semseg/mIoU_seen``, ``semseg/mIoU_unseen``,
    ``semseg/hIoU`` (the prefix is ``semseg`` unless ``prefix`` is given).
    """

    default_prefix = "semseg"

    def __init__(
        self,
        num_classes: int | None = None,
        ignore_index: int | None = 255,
        unseen_classes: Sequence[int | str] | None = None,
        log_table: bool = True,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.unseen_classes = None if unseen_classes is None else list(unseen_classes)
        self.log_table = log_table

    def _class_names(self) -> list[str] | None:
        meta = self.dataset_meta or {}
        names = meta.get("classes")
        return None if names is None else list(names)

    def _num_classes(self) -> int:
        if self.num_classes is not None:
            return int(self.num_classes)
        names = self._class_names()
        if names is None:
            raise ValueError("SemSegMetric: give num_classes or a dataset_meta with 'classes'")
        return len(names)

    def _unseen_indices(self) -> list[int] | None:
        if self.unseen_classes is None:
            return None
        return class_indices(self.unseen_classes, self._class_names(),
                             lambda c: f"SemSegMetric: unseen class '{c}' not in dataset_meta['classes']")

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        num_classes = self._num_classes()
        for sample in data_samples:
            pred = _as_label_map(_get(sample, "pred_sem_seg"), "pred_sem_seg")
            gt = _as_label_map(_get(sample, "gt_sem_seg"), "gt_sem_seg")
            conf = confusion_matrix(pred, gt, num_classes, self.ignore_index)
            self.results.append(conf.cpu().numpy())

    def compute_metrics(self, results: list) -> dict[str, float]:
        num_classes = self._num_classes()
        total = np.zeros((num_classes, num_classes), dtype=np.int64)
        for conf in results:  # summed in place: no (N, C, C) stack
            total += np.asarray(conf, dtype=np.int64)
        unseen = self._unseen_indices()
        m = semseg_metrics(total, unseen)
        if self.log_table:
            table = format_class_table(m["IoU"], m["Acc"], self._class_names(), unseen or ())
            print_log("per-class results:\n" + table, logger="current")
        keys = ["mIoU", "aAcc", "mAcc"] + (["mIoU_seen", "mIoU_unseen", "hIoU"] if unseen is not None else [])
        return {k: float(m[k]) for k in keys}
