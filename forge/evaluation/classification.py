"""Top-k classification accuracy as an mmengine metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Percentage of samples whose label is among the ``k`` highest scores, for each ``k``.

    Args:
        scores: ``(N, C)`` class scores.
        labels: ``(N,)`` integer labels.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (N, C) and labels (N,), got {scores.shape} and {labels.shape}")
    order = np.argsort(-scores, axis=1, kind="stable")
    out = {}
    for k in topk:
        k_eff = min(k, scores.shape[1])
        hit = (order[:, :k_eff] == labels[:, None]).any(axis=1)
        out[f"top{k}"] = float(hit.mean() * 100.0) if len(labels) else 0.0
    return out


class Accuracy(BaseMetric):
    """Top-k accuracy (in percent) of ``ImageClassifier`` predictions; keys ``accuracy/top1``, ``accuracy/top5``."""

    default_prefix = "accuracy"

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            scores = sample["scores"]
            if isinstance(scores, torch.Tensor):
                scores = scores.float().cpu().numpy()
            self.results.append((scores, int(sample["gt_label"])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        scores = np.stack([r[0] for r in results])
        labels = np.array([r[1] for r in results])
        return topk_accuracy(scores, labels, self.topk)
