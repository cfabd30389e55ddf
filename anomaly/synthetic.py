"""Synthetic Rglasso problems in the spirit of the paper's experiments (arXiv 1811.04277, §5).

A sparse precision matrix Θ* → covariance Σ* = Θ*^{-1} (rescaled to unit variances) → ``n`` Gaussian samples →
sample covariance ``M_clean`` → a few symmetric off-diagonal pairs of ``M_clean`` receive gross additive errors,
giving the observed ``M = M_clean + S*``. The paper's exact generator parameters are not reproduced here (its text
was not available to us); the defaults below are our choice and are recorded in ``docs/anomaly.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RglassoProblem", "make_sparse_precision", "corrupt_covariance", "make_rglasso_problem"]


@dataclass
class RglassoProblem:
    """One synthetic instance. All matrices ``(p, p)``; ``X`` is ``(n, p)``."""

    precision: np.ndarray  # Θ*, sparse, unit-variance scaling (diag(Θ*^{-1}) = 1)
    covariance: np.ndarray  # Σ* = Θ*^{-1}
    X: np.ndarray  # clean samples N(0, Σ*)
    M_clean: np.ndarray  # sample covariance of X (1/n, mean removed)
    M: np.ndarray  # observed, corrupted covariance M_clean + S*
    S: np.ndarray  # planted corruption S*, symmetric, zero diagonal
    mask: np.ndarray  # bool (p, p), True on corrupted entries (both (i, j) and (j, i))


def make_sparse_precision(
    p: int,
    density: float = 0.02,
    value_range: tuple[float, float] = (0.3, 0.7),
    margin: float = 0.2,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Random sparse SPD precision matrix ``(p, p)`` whose inverse has unit diagonal.

    Each off-diagonal pair is non-zero with probability ``density`` with value ``±U(value_range)``; the diagonal is
    then raised to ``|λ_min| + margin`` above the off-diagonal part so that Θ ≻ 0, and finally Θ is rescaled by
    ``D Θ D`` with ``D = diag(Θ^{-1})^{1/2}`` so that Σ = Θ^{-1} is a correlation matrix (rescaling keeps the support).
    """
    rng = np.random.default_rng(rng)
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    iu = np.triu_indices(p, 1)
    on = rng.random(iu[0].size) < density
    vals = rng.uniform(*value_range, size=iu[0].size) * rng.choice([-1.0, 1.0], size=iu[0].size)
    A = np.zeros((p, p))
    A[iu[0][on], iu[1][on]] = vals[on]
    A = A + A.T
    lam_min = np.linalg.eigvalsh(A)[0]
    theta = A + (max(0.0, -lam_min) + margin) * np.eye(p)
    d = np.sqrt(np.diag(np.linalg.inv(theta)))
    theta = theta * np.outer(d, d)
    return 0.5 * (theta + theta.T)


def corrupt_covariance(
    M: np.ndarray,
    n_pairs: int,
    magnitude: tuple[float, float] = (0.5, 1.0),
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add gross errors to ``n_pairs`` random off-diagonal pairs of ``M``.

    ``S*_ij = S*_ji = ±U(magnitude) * sqrt(M_ii M_jj)`` (sign random), so errors are a sizeable fraction of a unit
    correlation and usually make ``M + S*`` indefinite. Returns ``(M + S*, S*, mask)``.
    """
    rng = np.random.default_rng(rng)
    p = M.shape[0]
    iu = np.triu_indices(p, 1)
    if not 0 <= n_pairs <= iu[0].size:
        raise ValueError(f"n_pairs must be in [0, {iu[0].size}], got {n_pairs}")
    pick = rng.choice(iu[0].size, size=n_pairs, replace=False)
    rows, cols = iu[0][pick], iu[1][pick]
    scale = np.sqrt(np.diag(M)[rows] * np.diag(M)[cols])
    vals = rng.uniform(*magnitude, size=n_pairs) * rng.choice([-1.0, 1.0], size=n_pairs) * scale
    S = np.zeros_like(M, dtype=float)
    S[rows, cols] = vals
    S[cols, rows] = vals
    return M + S, S, S != 0


def make_rglasso_problem(
    p: int = 100,
    n: int | None = None,
    density: float | None = None,
    corruption: float = 0.01,
    magnitude: tuple[float, float] = (0.5, 1.0),
    seed: int | None = 0,
) -> RglassoProblem:
    """Full synthetic instance.

    Args:
        p: dimension.
        n: number of samples (default ``5 p``).
        density: off-diagonal density of Θ* (default ``2 / p``, about two neighbours per variable).
        corruption: fraction of off-diagonal pairs that get a gross error (at least one pair).
        magnitude: range of ``|S*_ij| / sqrt(M_ii M_jj)``.
        seed: random seed (one ``numpy.random.Generator`` drives all draws).
    """
    rng = np.random.default_rng(seed)
    n = 5 * p if n is None else n
    density = min(1.0, 2.0 / p) if density is None else density
    theta = make_sparse_precision(p, density, rng=rng)
    sigma = np.linalg.inv(theta)
    sigma = 0.5 * (sigma + sigma.T)
    X = rng.multivariate_normal(np.zeros(p), sigma, size=n, method="cholesky")
    Xc = X - X.mean(0)
    M_clean = Xc.T @ Xc / n
    n_pairs = max(1, int(round(corruption * p * (p - 1) / 2)))
    M, S, mask = corrupt_covariance(M_clean, n_pairs, magnitude, rng=rng)
    return RglassoProblem(theta, sigma, X, M_clean, M, S, mask)
