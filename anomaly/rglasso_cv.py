"""Cross-validated choice of Rglasso's ``(ρ, λ)``, in the spirit of scikit-learn's ``GraphicalLassoCV``.

For each point of a ``(ρ, λ)`` grid and each of ``K`` folds, Rglasso is fitted on the training-fold covariance
and scored by the held-out Gaussian log-likelihood of the test-fold covariance under the fitted model,
``(log det Θ - tr(M_test Θ) - p log 2π) / 2`` (:func:`sklearn.covariance.log_likelihood`, what
``GraphicalLassoCV`` maximises). ``Θ`` is the positive definite precision that the ADMM pairs with the cleaned
covariance ``F`` (``Θ⁻¹ = F + ρG``); ``F`` itself is usually singular (its PSD constraint is active), so its own
likelihood would be ``-∞``. The point with the best mean score is refitted on all the data.

What this can and cannot choose (measured in ``docs/anomaly.md``): the folds differ only by sampling noise, so the
held-out likelihood calibrates ``ρ`` against noise; a corruption present in every fold (the Rglasso model: a sparse
error in the covariance) looks like signal to any split of the samples, so the likelihood cannot tell a corrupted
entry from a true correlation and the choice of ``λ`` follows prediction, not the planted support.

Grid (default, 3 x 3 x K fits): ``ρ ∈ ρ₀·{1/2, 1, 2}``, ``λ ∈ λ₀·{1/4, 1, 4}`` around
:func:`~anomaly.rglasso.default_penalties` ``(ρ₀, λ₀)`` for the full ``n``; within a fold and ``ρ`` the fits run
from the largest ``λ`` down, each warm-started from the previous one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.covariance import log_likelihood
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv

from .admm_ops import check_covariance
from .rglasso import RobustGraphicalLasso, _check_samples, _covariance, default_penalties, robust_graphical_lasso

__all__ = ["RobustGraphicalLassoCV", "rglasso_cv_scores", "default_grid"]

RHO_FACTORS = (0.5, 1.0, 2.0)
LAM_FACTORS = (0.25, 1.0, 4.0)


def default_grid(p: int, n_samples: int) -> tuple[list[float], list[float]]:
    """``(rhos, lams)``: the default grid around :func:`default_penalties` ``(p, n_samples)``."""
    rho0, lam0 = default_penalties(p, n_samples)
    return [rho0 * f for f in RHO_FACTORS], [lam0 * f for f in LAM_FACTORS]


def rglasso_cv_scores(folds: Sequence[tuple[np.ndarray, np.ndarray]], rhos: Sequence[float],
                      lams: Sequence[float], **solver_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Held-out scores on explicit folds.

    Args:
        folds: ``K`` pairs ``(M_train, M_test)`` of ``(p, p)`` covariances.
        rhos, lams: the grid (each value > 0).
        solver_kwargs: passed to :func:`~anomaly.rglasso.robust_graphical_lasso` (``max_iter``, ``rel_tol``, ...).

    Returns:
        ``scores`` ``(len(rhos), len(lams), K)`` — :func:`sklearn.covariance.log_likelihood` of ``M_test`` under the
        precision fitted on ``M_train`` — and ``converged`` (bool, same shape). Non-convergence of grid fits is
        counted, not warned one by one.
    """
    rhos, lams = [float(r) for r in rhos], [float(v) for v in lams]
    if not folds or not rhos or not lams or min(rhos) <= 0 or min(lams) <= 0:
        raise ValueError(f"need >= 1 fold and positive grids, got {len(folds)} folds, rhos={rhos}, lams={lams}")
    order = np.argsort(lams)[::-1]  # warm starts from the sparsest S (largest λ) down
    scores = np.full((len(rhos), len(lams), len(folds)), -np.inf)
    converged = np.zeros(scores.shape, dtype=bool)
    for k, (M_train, M_test) in enumerate(folds):
        M_train = check_covariance(M_train, f"folds[{k}][0]")
        M_test = check_covariance(M_test, f"folds[{k}][1]")
        for a, rho in enumerate(rhos):
            prev = None
            for b in order:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    prev = robust_graphical_lasso(M_train, rho, lams[b], warm_start=prev, **solver_kwargs)
                scores[a, b, k] = log_likelihood(M_test, prev.precision)
                converged[a, b, k] = prev.converged
    return scores, converged


class RobustGraphicalLassoCV(RobustGraphicalLasso):
    """Rglasso with ``(ρ, λ)`` chosen by ``cv``-fold cross-validation (module docstring).

    Parameters beyond :class:`~anomaly.rglasso.RobustGraphicalLasso`'s: ``rhos``, ``lams`` (the grid; ``None``:
    :func:`default_grid`), ``cv`` (an int for ``KFold`` without shuffling, as ``GraphicalLassoCV``, or any
    scikit-learn splitter). ``fit(X, covariance_offset=S)`` adds a known ``(p, p)`` offset to every covariance the fit
    computes (each training and test fold and the full data): for simulations in which the corruption lives in the
    covariance rather than in the samples.

    After fitting, besides the base attributes: ``rho_``, ``lam_`` (chosen), ``cv_results_`` (``rho``, ``lam``,
    ``mean_test_score``, ``std_test_score``, ``split{k}_test_score``, ``converged`` — the fraction of folds whose fit
    met the stopping rule — one entry per grid point, ρ-major), ``best_index_``. A ``ConvergenceWarning`` reports how
    many grid fits did not converge. ``best_on_edge_`` is True when the chosen ``ρ`` or ``λ`` is the smallest or
    largest of its grid (the optimum may lie outside: widen the grid).
    """

    def __init__(
        self,
        rhos: Sequence[float] | None = None,
        lams: Sequence[float] | None = None,
        cv: int | object = 3,
        *,
        standardize: bool = True,
        penalize_diagonal: bool = False,
        outlier_diagonal: bool = False,
        adaptive: bool = True,
        max_iter: int = 1000,
        abs_tol: float = 1e-6,
        rel_tol: float = 1e-4,
        record_history: bool = False,
        contamination: float = 0.1,
        store_precision: bool = True,
        assume_centered: bool = False,
    ):
        # attributes set directly (no super().__init__): rho, lam and warm_start are not parameters here
        self.store_precision = store_precision
        self.assume_centered = assume_centered
        self.standardize = standardize
        self.penalize_diagonal = penalize_diagonal
        self.outlier_diagonal = outlier_diagonal
        self.adaptive = adaptive
        self.max_iter = max_iter
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol
        self.record_history = record_history
        self.contamination = contamination
        self.rhos = rhos
        self.lams = lams
        self.cv = cv

    warm_start = False  # the refit starts cold (read by the base class's _fit_penalties)

    def fit(self, X: np.ndarray, y: object = None, *, covariance_offset: np.ndarray | None = None):
        """Cross-validate on samples ``X`` ``(n, p)``, then refit on all of them with the best ``(ρ, λ)``."""
        X = _check_samples(X)
        n, p = X.shape
        offset = np.zeros((p, p)) if covariance_offset is None else check_covariance(covariance_offset,
                                                                                       "covariance_offset")
        if offset.shape != (p, p):
            raise ValueError(f"covariance_offset must be ({p}, {p}) for X with {p} features, got {offset.shape}")
        rhos, lams = default_grid(p, n)
        rhos = rhos if self.rhos is None else list(self.rhos)
        lams = lams if self.lams is None else list(self.lams)
        splitter = check_cv(self.cv)
        folds = [(_covariance(X[tr], self.assume_centered) + offset, _covariance(X[te], self.assume_centered) + offset)
                 for tr, te in splitter.split(X)]
        kwargs = self._solver_kwargs()
        scores, converged = rglasso_cv_scores(folds, rhos, lams, **kwargs)
        mean = scores.mean(axis=2)
        a, b = np.unravel_index(int(np.argmax(mean)), mean.shape)
        grid = [(r, v) for r in rhos for v in lams]
        self.cv_results_ = {
            "rho": np.array([g[0] for g in grid]), "lam": np.array([g[1] for g in grid]),
            "mean_test_score": mean.ravel(), "std_test_score": scores.std(axis=2).ravel(),
            **{f"split{k}_test_score": scores[:, :, k].ravel() for k in range(scores.shape[2])},
            "converged": converged.mean(axis=2).ravel(),
        }
        self.best_index_ = int(a * len(lams) + b)
        self.best_on_edge_ = bool((len(rhos) > 1 and a in (0, len(rhos) - 1))
                                  or (len(lams) > 1 and b in (0, len(lams) - 1)))
        bad = int((~converged).sum())
        if bad:
            warnings.warn(f"RobustGraphicalLassoCV: {bad} of {converged.size} grid fits did not converge within "
                          f"max_iter={self.max_iter} (rel_tol={self.rel_tol:g}); increase max_iter or loosen rel_tol",
                          ConvergenceWarning, stacklevel=2)
        self.location_ = np.zeros(p) if self.assume_centered else X.mean(0)
        return self._fit_penalties(_covariance(X, self.assume_centered) + offset, X, n, rhos[a], lams[b])
