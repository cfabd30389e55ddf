"""Metrics for the Rglasso experiments (the per-sample outlier metrics live in ``forge.evaluation.outlier``).

* support recovery of the precision matrix: precision / recall / F1 of the off-diagonal support (upper triangle,
  each edge once), an entry counts as non-zero when ``|Θ_ij| > tol * max|diag Θ|``;
* detection of corrupted covariance entries: ROC-AUC of ``|S_ij|`` against the planted mask and F1 of
  ``S_ij != 0`` (upper triangle, off-diagonal);
* relative Frobenius error of the cleaned covariance ``||F - F*||_F / ||F*||_F``.
"""

from __future__ import annotations

import numpy as np

from forge.evaluation.outlier import roc_auc

__all__ = ["support_metrics", "entry_detection_metrics", "relative_error", "offdiag_upper"]


def offdiag_upper(A: np.ndarray) -> np.ndarray:
    """Strict upper triangle of a ``(p, p)`` matrix as a vector of length ``p (p - 1) / 2``."""
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {A.shape}")
    return A[np.triu_indices(A.shape[0], 1)]


def _prf(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(pred & true))
    precision = tp / pred.sum() if pred.sum() else (1.0 if not true.any() else 0.0)
    recall = tp / true.sum() if true.sum() else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def support_metrics(theta_est: np.ndarray, theta_true: np.ndarray, tol: float = 1e-6) -> dict[str, float]:
    """Off-diagonal support precision / recall / F1 of an estimated precision matrix."""
    est = np.asarray(theta_est, dtype=float)
    true = np.asarray(theta_true, dtype=float)
    if est.shape != true.shape:
        raise ValueError(f"shapes differ: {est.shape} vs {true.shape}")
    pred = np.abs(offdiag_upper(est)) > tol * np.abs(np.diag(est)).max()
    truth = np.abs(offdiag_upper(true)) > tol * np.abs(np.diag(true)).max()
    return _prf(pred, truth)


def entry_detection_metrics(S_est: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``{"auc", "f1", "precision", "recall", "density_ratio"}`` for corrupted-entry detection.

    ``density_ratio`` = number of non-zero off-diagonal pairs of ``S_est`` / number of planted pairs.
    """
    s = np.abs(offdiag_upper(np.asarray(S_est, dtype=float)))
    m = offdiag_upper(np.asarray(mask, dtype=bool))
    out = _prf(s > 0, m)
    out["auc"] = roc_auc(m.astype(int), s)
    out["density_ratio"] = float((s > 0).sum() / max(m.sum(), 1))
    return out


def relative_error(F_est: np.ndarray, F_ref: np.ndarray) -> float:
    """``||F_est - F_ref||_F / ||F_ref||_F``."""
    return float(np.linalg.norm(np.asarray(F_est) - F_ref) / np.linalg.norm(F_ref))
