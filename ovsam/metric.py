"""Validation metric of SAM2CLIP distillation: the feature MSE against the teacher's embeddings.

``distill/mse`` is the mean squared error over every element of every validation image (the training loss's
definition); ``distill/mse_mean_embedding`` is the MSE of the best constant answer, the teacher's mean embedding
map over the split (per channel and position), so a value below it means the adapter predicts something
image-specific.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric

__all__ = ["FeatureMSEMetric"]


class FeatureMSEMetric(BaseMetric):
    """Reads ``sq_err``, ``numel``, ``target_sum`` and ``target_sq`` (``(C, h, w)``) from each image's record, as
    :class:`ovsam.train.SAM2CLIPDistiller` ``predict`` writes them."""

    default_prefix = "distill"

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        for s in data_samples:
            missing = {"sq_err", "numel", "target_sum", "target_sq"} - set(s)
            if missing:
                raise KeyError(f"FeatureMSEMetric: prediction records lack {sorted(missing)} (got {sorted(s)}); "
                               "use it with ovsam.train.SAM2CLIPDistiller")
            self.results.append({k: s[k] for k in ("sq_err", "numel", "target_sum", "target_sq")})

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            raise ValueError("FeatureMSEMetric: no validation images")
        n = len(results)
        mse = sum(r["sq_err"] for r in results) / sum(r["numel"] for r in results)
        mean = torch.stack([r["target_sum"] for r in results]).sum(0) / n
        sq = torch.stack([r["target_sq"] for r in results]).sum(0) / n
        return {"mse": float(mse), "mse_mean_embedding": float((sq - mean.square()).clamp_min(0).mean())}
