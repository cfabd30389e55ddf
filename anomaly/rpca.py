"""Robust PCA by principal component pursuit (PCP), solved with the inexact augmented Lagrange multiplier method.

Candès, Li, Ma & Wright, "Robust Principal Component Analysis?", JACM 2011 (problem ``min ||L||_* + λ||S||_1
s.t. D = L + S``, default ``λ = 1/sqrt(max(m, n))``); solver: Lin, Chen & Ma, "The Augmented Lagrange Multiplier
Method for Exact Recovery of Corrupted Low-Rank Matrices", arXiv 1009.5055, Algorithm 5 (inexact ALM):

    Y_0 = D / J(D),  J(D) = max(||D||_2, ||D||_∞ / λ);   μ_0 = 1.25 / ||D||_2;   ρ = 1.5
    L_{k+1} = SVT_{1/μ_k}(D - S_k + Y_k / μ_k)            (singular value soft-thresholding)
    S_{k+1} = soft(D - L_{k+1} + Y_k / μ_k, λ / μ_k)
    Y_{k+1} = Y_k + μ_k (D - L_{k+1} - S_{k+1});  μ_{k+1} = min(ρ μ_k, μ_max)
    stop when ||D - L - S||_F / ||D||_F < tol.
"""

from __future__ import annotations

import numpy as np

from .admm_ops import soft_threshold

__all__ = ["principal_component_pursuit", "RobustPCA"]


def principal_component_pursuit(
    D: np.ndarray,
    lam: float | None = None,
    tol: float = 1e-7,
    max_iter: int = 1000,
    rho: float = 1.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Split ``D`` ``(m, n)`` into low-rank ``L`` plus sparse ``S``. Returns ``(L, S, n_iter)``."""
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or not np.all(np.isfinite(D)):
        raise ValueError(f"PCP needs a finite 2-D matrix, got shape {D.shape}")
    m, n = D.shape
    lam = 1.0 / np.sqrt(max(m, n)) if lam is None else float(lam)
    norm_two = np.linalg.norm(D, 2)
    norm_fro = np.linalg.norm(D)
    if norm_fro == 0:
        return np.zeros_like(D), np.zeros_like(D), 0
    Y = D / max(norm_two, np.abs(D).max() / lam)
    mu = 1.25 / norm_two
    mu_max = mu * 1e7
    S = np.zeros_like(D)
    L = np.zeros_like(D)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is returned
        U, sig, Vt = np.linalg.svd(D - S + Y / mu, full_matrices=False)
        sig = np.maximum(sig - 1.0 / mu, 0.0)
        r = int((sig > 0).sum())
        L = (U[:, :r] * sig[:r]) @ Vt[:r]
        S = soft_threshold(D - L + Y / mu, lam / mu)
        R = D - L - S
        Y = Y + mu * R
        mu = min(mu * rho, mu_max)
        if np.linalg.norm(R) / norm_fro < tol:
            break
    return L, S, n_iter


class RobustPCA:
    """Outlier detector: PCP on the standardised data matrix ``X`` ``(n, d)``.

    The score of a sample is the norm of its residual off the principal subspace of ``L`` (rank = number of
    non-zero singular values of ``L``, capped at ``d - 1``); for training rows this is ``≈ ||S_i||``.
    Higher = more anomalous (PyOD convention). ``decision_scores_``, ``threshold_``, ``labels_`` as in PyOD.
    """

    def __init__(self, lam: float | None = None, tol: float = 1e-7, max_iter: int = 1000, contamination: float = 0.1):
        self.lam = lam
        self.tol = tol
        self.max_iter = max_iter
        self.contamination = contamination

    def fit(self, X: np.ndarray, y: object = None) -> RobustPCA:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        self.mean_ = X.mean(0)
        sd = X.std(0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mean_) / self.scale_
        L, S, self.n_iter_ = principal_component_pursuit(Z, self.lam, self.tol, self.max_iter)
        self.low_rank_, self.sparse_ = L, S
        _, sig, Vt = np.linalg.svd(L, full_matrices=False)
        rank = int((sig > 1e-8 * max(sig.max(), 1e-300)).sum()) if sig.size else 0
        self.rank_ = min(rank, X.shape[1] - 1)
        self.components_ = Vt[: self.rank_]
        self.decision_scores_ = self.decision_function(X)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=float) - self.mean_) / self.scale_
        R = Z - (Z @ self.components_.T) @ self.components_
        return np.linalg.norm(R, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > self.threshold_).astype(int)
