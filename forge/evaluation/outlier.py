"""Outlier-detection metrics on per-sample scores (higher score = more anomalous; labels 1 = outlier, 0 = inlier).

Pure functions, shared by ``forge.fit`` and the anomaly benchmarks:

* ``roc_auc`` — area under the ROC curve (ties count one half, as scikit-learn);
* ``average_precision`` — scikit-learn's step-wise AP (no interpolation);
* ``precision_at_n`` — fraction of true outliers among the ``n`` highest scores, ``n`` = number of true outliers
  by default (ties at the cut are broken by the stable order of the input).

All return NaN when the labels hold a single class (the metric is undefined), never raise for that case.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "average_precision", "precision_at_n", "outlier_metrics"]


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf values")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got values {np.unique(y)[:10]}")
    return y.astype(np.int64), s


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y, s = _check(y_true, scores)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    y, s = _check(y_true, scores)
    if y.min() == y.max():
        return float("nan")
    return float(average_precision_score(y, s))


def precision_at_n(y_true: np.ndarray, scores: np.ndarray, n: int | None = None) -> float:
    y, s = _check(y_true, scores)
    n = int(y.sum()) if n is None else int(n)
    if n <= 0 or y.min() == y.max():
        return float("nan")
    top = np.argsort(-s, kind="stable")[:n]
    return float(y[top].mean())


def outlier_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``{"roc_auc", "average_precision", "precision_at_n"}`` for one score vector."""
    return {
        "roc_auc": roc_auc(y_true, scores),
        "average_precision": average_precision(y_true, scores),
        "precision_at_n": precision_at_n(y_true, scores),
    }
