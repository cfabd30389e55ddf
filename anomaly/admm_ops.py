"""Proximal operators and input checks used by the Rglasso ADMM (``anomaly/rglasso.py``).

All functions take and return dense ``(p, p)`` float64 numpy arrays; symmetric inputs give symmetric outputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["soft_threshold", "project_psd", "prox_neg_logdet", "symmetrize", "check_covariance"]


def symmetrize(A: np.ndarray) -> np.ndarray:
    """``(A + Aᵀ) / 2`` — removes the round-off asymmetry that matrix products accumulate."""
    return 0.5 * (A + A.T)


def soft_threshold(A: np.ndarray, tau: float | np.ndarray) -> np.ndarray:
    """Entry-wise soft thresholding ``sign(a) * max(|a| - tau, 0)``.

    This is the proximal operator of ``tau * ||A||_1``: ``argmin_X tau ||X||_1 + 1/2 ||X - A||_F^2``.
    ``tau`` may be a scalar or an array broadcastable to ``A`` (e.g. ``0`` on the diagonal to leave it unpenalised).
    """
    tau = np.asarray(tau, dtype=float)
    if np.any(tau < 0):
        raise ValueError(f"soft_threshold: tau must be >= 0, got min {tau.min()}")
    return np.sign(A) * np.maximum(np.abs(A) - tau, 0.0)


def project_psd(A: np.ndarray, eps: float = 0.0, try_cholesky: bool = True) -> np.ndarray:
    """Frobenius-norm projection of a symmetric matrix onto ``{X : X ⪰ eps I}``.

    ``A = V diag(w) Vᵀ``  →  ``V diag(max(w, eps)) Vᵀ`` (the nearest matrix in Frobenius norm, Higham 1988).
    If ``A - eps I`` already has a Cholesky factor it is returned unchanged (symmetrised), which skips the
    ``O(p^3)`` eigendecomposition in the common case where the constraint is inactive.
    """
    A = symmetrize(np.asarray(A, dtype=float))
    if try_cholesky:
        try:
            np.linalg.cholesky(A - eps * np.eye(A.shape[0]) if eps else A)
            return A
        except np.linalg.LinAlgError:
            pass
    w, V = np.linalg.eigh(A)
    return symmetrize((V * np.maximum(w, eps)) @ V.T)


def prox_neg_logdet(B: np.ndarray, eta: float) -> np.ndarray:
    """Solve ``argmin_{Θ ≻ 0}  -log det Θ + (η/2) ||Θ - B / η||_F^2``, i.e. ``η Θ - Θ^{-1} = B``.

    With ``B = V diag(w) Vᵀ`` the solution shares the eigenvectors and has eigenvalues
    ``θ_i = (w_i + sqrt(w_i^2 + 4 η)) / (2 η)`` (positive root of ``η θ^2 - w θ - 1 = 0``), as in Boyd et al.,
    "Distributed optimization ... ADMM" (2011), §6.5 (sparse inverse covariance selection).
    The caller passes ``B = η (Z - U) - F`` for the Rglasso Θ-step.
    """
    if eta <= 0:
        raise ValueError(f"prox_neg_logdet: eta must be > 0, got {eta}")
    w, V = np.linalg.eigh(symmetrize(B))
    theta = (w + np.sqrt(w * w + 4.0 * eta)) / (2.0 * eta)
    return symmetrize((V * theta) @ V.T)


def check_covariance(M: object, name: str = "covariance", atol: float = 1e-8, rtol: float = 1e-6) -> np.ndarray:
    """Validate a covariance-like input: 2-D, square, finite, symmetric (up to ``atol + rtol * max|M|``).

    Returns a float64 symmetrised copy. Raises ``ValueError`` naming ``name`` and what is wrong.
    Indefinite matrices are accepted on purpose: a grossly corrupted sample covariance usually is indefinite.
    """
    A = np.asarray(M, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {A.shape}")
    if A.shape[0] < 1:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(A)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} has {int(bad.sum())} non-finite entries (NaN/inf), first at ({i}, {j})")
    asym = np.abs(A - A.T)
    tol = atol + rtol * float(np.abs(A).max())
    if asym.max() > tol:
        i, j = np.unravel_index(int(np.argmax(asym)), A.shape)
        raise ValueError(
            f"{name} is not symmetric: |M[{i},{j}] - M[{j},{i}]| = {asym.max():.3g} > tolerance {tol:.3g}"
        )
    return symmetrize(A)
