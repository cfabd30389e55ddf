"""Robust Graphical Lasso (Rglasso), Liu, Paffenroth, Zou & Zhou, "Anomaly Detection via Graphical Lasso",
arXiv 1811.04277.

Problem (paper §3)::

    minimise_{Θ ≻ 0, F ⪰ 0, S}   -log det Θ + tr(F Θ) + ρ ||Θ||_1 + λ ||S||_1     subject to  M = F + S

``M`` is the observed sample covariance, ``F`` the cleaned covariance with sparse inverse ``Θ`` and ``S`` the sparse
outliers. The ADMM below is our own derivation (the paper's text was not available to us when writing this; see
``docs/anomaly.md`` for the derivation and what was checked). Splitting: ``Z`` is an ℓ1 copy of ``Θ`` (constraint
``Θ = Z``, scaled dual ``U``, penalty ``η``) and ``Y`` the (unscaled) multiplier of ``M = F + S`` (penalty ``μ``).
One sweep, with every sub-problem solved exactly:

1. ``Θ = argmin -log det Θ + tr(FΘ) + η/2 ||Θ - Z + U||²``: eigendecompose ``η (Z - U) - F = V diag(w) Vᵀ``,
   ``Θ = V diag((w + sqrt(w² + 4η)) / 2η) Vᵀ``  (:func:`~anomaly.admm_ops.prox_neg_logdet`).
2. ``Z = soft(Θ + U, ρ/η)`` (diagonal unpenalised by default, as in scikit-learn's ``GraphicalLasso``).
3. ``U ← U + Θ - Z``.
4. ``F = argmin_{F ⪰ 0} tr(FΘ) - <Y, F> + μ/2 ||M - F - S||²  =  Π_PSD(M - S + (Y - Θ) / μ)``.
5. ``S = soft(M - F + Y/μ, λ/μ)`` (diagonal of ``S`` held at 0 by default).
6. ``Y ← Y + μ (M - F - S)``.

Stopping (Boyd et al. 2011, §3.3): primal residuals ``||Θ - Z||``, ``||M - F - S||`` and dual residuals
``η ||Z - Z_prev||``, ``μ ||S - S_prev||`` below ``p * abs_tol + rel_tol * scale``; otherwise a
``sklearn.exceptions.ConvergenceWarning`` after ``max_iter`` sweeps. Optional residual balancing (§3.4.1)
doubles/halves ``η`` (rescaling ``U``); ``μ`` is only ever doubled (see :func:`_update_mu`).

Default penalties (:func:`default_penalties`, used when ``rho`` / ``lam`` are ``"auto"``): ``ρ`` from Banerjee,
El Ghaoui & d'Aspremont (2008), ``λ = κ / ρ`` (``κ = DEFAULT_KAPPA``); the reasons are in that function.

Why S picks out the corruption: at a fixed point ``Y = Θ`` (step 4 with an inactive PSD constraint) and
``Y_ij ∈ λ ∂|S_ij|`` (step 5), so ``|Θ_ij| ≤ λ`` everywhere and ``S_ij ≠ 0`` only where the box is tight.
Rglasso is the graphical lasso with an ℓ∞ box on the off-diagonal precision; the multiplier of the box is ``S``.
A gross error in ``M_ij`` pushes ``Θ_ij`` to the box and is absorbed by ``S``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import t as student_t
from sklearn.covariance import EmpiricalCovariance
from sklearn.exceptions import ConvergenceWarning

from .admm_ops import check_covariance, project_psd, prox_neg_logdet, soft_threshold, symmetrize

__all__ = ["RglassoResult", "robust_graphical_lasso", "RobustGraphicalLasso", "rglasso_objective",
           "default_penalties", "resolve_penalties", "DEFAULT_ALPHA", "DEFAULT_KAPPA"]

DEFAULT_ALPHA = 0.05  # Banerjee et al.'s bound on the probability of a false edge between disconnected components
DEFAULT_KAPPA = 0.4  # λ·ρ, calibrated on planted problems (docs/anomaly.md, "Choosing ρ and λ")


def default_penalties(p: int, n_samples: int, alpha: float = DEFAULT_ALPHA,
                      kappa: float = DEFAULT_KAPPA) -> tuple[float, float]:
    """Default ``(ρ, λ)`` on the correlation scale for ``p`` variables and ``n_samples`` samples.

    ``ρ = t / sqrt(n - 2 + t²)`` with ``t`` the upper ``α / (2 p²)`` point of Student's t with ``n - 2`` degrees of
    freedom: Banerjee, El Ghaoui & d'Aspremont, "Model selection through sparse maximum likelihood estimation",
    JMLR 9 (2008), Theorem 2 (unit variances after standardising), which bounds by ``α`` the probability that the
    graphical lasso joins two disconnected components. For large ``n`` it is ``z / sqrt(n)`` with ``z`` the normal
    quantile, ``z < sqrt(2 log(2p²/α))``: the ``sqrt(log p / n)`` rate of graphical-lasso theory (Ravikumar,
    Wainwright, Raskutti & Yu, EJS 5, 2011), and equals the previous fixed default 0.2 at p = 100, n = 500.

    ``λ = κ / ρ``. Two reasons, both specific to this problem (``λ`` is the bound on ``|Θ_ij|`` beyond which
    entries of ``M`` are called corruption, module docstring): (1) ``(ρ, λ) -> (cρ, λ/c)`` is the same problem
    for ``M -> cM``, so ``λρ`` is the scale-free combination; (2) corruption that makes ``M`` indefinite leaves ``F``
    singular, and from ``Θ⁻¹ = F + ρG`` (``|G_ij| ≤ 1``) ``Θ`` then has an eigenvalue of order ``1/ρ`` on the
    null space of ``F``: the precision entries around a corrupted pair grow like ``1/ρ``, so a box that keeps them
    from spreading into ``S`` must grow like ``1/ρ`` too. Measured (docs/benchmarks.md#anomaly-rglasso-selection):
    with ``λρ`` fixed the density of ``S`` stays at about twice the planted one while ``ρ`` goes from 0.27 (p = 50)
    to 0.15 (p = 200). A robust-PCA rule ``λ ∝ 1/sqrt(max(p, n))`` (Candès et al. 2011) goes the other way and
    flags more entries as ``n`` grows.
    """
    if p < 2 or n_samples < 3:
        raise ValueError(f"default_penalties needs p >= 2 and n_samples >= 3, got p={p}, n_samples={n_samples}")
    if not 0 < alpha < 1 or kappa <= 0:
        raise ValueError(f"need 0 < alpha < 1 and kappa > 0, got alpha={alpha}, kappa={kappa}")
    t = float(student_t.isf(alpha / (2.0 * p * p), n_samples - 2))
    rho = t / np.sqrt(n_samples - 2 + t * t)
    return float(rho), float(kappa / rho)


def resolve_penalties(rho: float | str, lam: float | str, p: int, n_samples: int | None) -> tuple[float, float]:
    """Replace ``"auto"`` by :func:`default_penalties`: ``ρ`` needs ``n_samples``; ``λ = κ/ρ`` needs only ``ρ``."""
    if isinstance(rho, str):
        if rho != "auto":
            raise ValueError(f"rho must be a number or 'auto', got {rho!r}")
        if n_samples is None:
            raise ValueError("rho='auto' needs n_samples= (the number of samples behind M), or give rho explicitly")
        rho = default_penalties(p, int(n_samples))[0]
    rho = float(rho)
    if isinstance(lam, str):
        if lam != "auto":
            raise ValueError(f"lam must be a number or 'auto', got {lam!r}")
        if rho <= 0:
            raise ValueError("lam='auto' is kappa / rho and needs rho > 0; give lam explicitly")
        lam = DEFAULT_KAPPA / rho
    lam = float(lam)
    if rho < 0 or lam <= 0:
        raise ValueError(f"need rho >= 0 and lam > 0, got rho={rho}, lam={lam}")
    return rho, lam


def _update_mu(mu: float, ratio: float, best: float, mu_max: float) -> tuple[float, float]:
    """The μ rule, applied every ``patience`` iterations: ``ratio`` is the scaled (F, S) residual
    ``max(r/eps_pri, s/eps_dual)``, ``best`` the lowest ratio seen so far. μ is doubled (capped at ``mu_max``) when
    ``ratio`` does not improve on ``best``. Returns the new ``(mu, best)``.

    μ couples the non-convex (F, Θ) pair; non-convex ADMM converges once the penalty is large enough (Wang, Yin &
    Zeng 2019), so μ is only ever increased, when the residuals have stopped making progress (the oscillation
    we observed with small μ)."""
    if ratio >= best and mu < mu_max:
        mu = min(2.0 * mu, mu_max)
    return mu, min(best, ratio)


@dataclass
class RglassoResult:
    """Output of :func:`robust_graphical_lasso`; all matrices ``(p, p)`` in the scale of the input ``M``."""

    precision: np.ndarray  # Θ, positive definite (the Θ-step iterate)
    precision_sparse: np.ndarray  # Z, the ℓ1 copy of Θ with exact zeros (use for support recovery)
    covariance: np.ndarray  # F, PSD
    outliers: np.ndarray  # S, sparse
    n_iter: int
    converged: bool
    eta: float
    mu: float
    rho: float = 0.0  # the penalties actually used ("auto" resolved)
    lam: float = 0.0
    history: list[dict] = field(default_factory=list)
    # ADMM state in the internal (standardised) scale, for warm starts
    state: dict = field(default_factory=dict, repr=False)


def rglasso_objective(M: np.ndarray, theta: np.ndarray, F: np.ndarray, S: np.ndarray, rho: float, lam: float,
                      penalize_diagonal: bool = False) -> float:
    """``-log det Θ + tr(FΘ) + ρ||Θ||_1 + λ||S||_1`` (diagonal of Θ excluded from ρ unless ``penalize_diagonal``)."""
    sign, logdet = np.linalg.slogdet(theta)
    if sign <= 0:
        return float("inf")
    l1 = np.abs(theta).sum() - (0.0 if penalize_diagonal else np.abs(np.diag(theta)).sum())
    return float(-logdet + np.sum(F * theta) + rho * l1 + lam * np.abs(S).sum())


def robust_graphical_lasso(
    M: np.ndarray,
    rho: float | str = "auto",
    lam: float | str = "auto",
    *,
    n_samples: int | None = None,
    standardize: bool = True,
    penalize_diagonal: bool = False,
    outlier_diagonal: bool = False,
    eta: float | None = None,
    mu: float | None = None,
    adaptive: bool = True,
    max_iter: int = 1000,
    abs_tol: float = 1e-6,
    rel_tol: float = 1e-4,
    warm_start: RglassoResult | None = None,
    record_history: bool = False,
) -> RglassoResult:
    """Solve the Rglasso problem by ADMM (module docstring has the updates).

    Args:
        M: ``(p, p)`` symmetric observed covariance (may be indefinite); NaNs/asymmetry raise ``ValueError``.
        rho: ℓ1 weight on Θ (sparsity of the graph); ``"auto"``: :func:`default_penalties` (needs ``n_samples``).
        lam: ℓ1 weight on S; equivalently the bound on ``|Θ_ij|`` beyond which entries of ``M`` are called
            outliers. Smaller ``lam`` flags more entries. ``"auto"``: ``DEFAULT_KAPPA / rho``.
        n_samples: number of samples behind ``M`` (only for ``rho="auto"``).
        standardize: solve on ``D^{-1/2} M D^{-1/2}`` with ``D = diag(M)`` (so ρ, λ are on the correlation scale)
            and map the results back. Needs a positive diagonal; assumes the diagonal is not corrupted.
        penalize_diagonal: include ``diag(Θ)`` in ``ρ ||Θ||_1``.
        outlier_diagonal: allow non-zero ``diag(S)`` (default: ``S`` is off-diagonal only).
        eta, mu: initial ADMM penalties (default ``c²`` and ``16/c²`` with ``c`` the mean diagonal of the scaled M).
        adaptive: residual balancing of ``η`` and ``μ`` (factor 2 when one residual exceeds 10x the other).
        max_iter, abs_tol, rel_tol: stopping rule.
        warm_start: a previous result (same ``p``, same ``standardize``) to start from.
        record_history: keep per-iteration residuals, penalties and objective in ``result.history``.

    Warns ``ConvergenceWarning`` when the stopping rule is not met within ``max_iter`` sweeps (``result.converged``
    is then False).
    """
    M = check_covariance(M, "M")
    p = M.shape[0]
    rho, lam = resolve_penalties(rho, lam, p, n_samples)
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    diag = np.diag(M).copy()
    if standardize:
        if np.any(diag <= 0):
            raise ValueError(f"standardize=True needs a positive diagonal in M; min diag(M) = {diag.min():.3g}")
        d = 1.0 / np.sqrt(diag)
        Ms = M * np.outer(d, d)
    else:
        d = np.ones(p)
        Ms = M
    c = float(np.mean(np.abs(np.diag(Ms)))) or 1.0
    eta = c * c if eta is None else float(eta)
    mu = 16.0 / (c * c) if mu is None else float(mu)

    rho_mask = np.full((p, p), rho)
    if not penalize_diagonal:
        np.fill_diagonal(rho_mask, 0.0)
    offdiag = np.ones((p, p))
    if not outlier_diagonal:
        np.fill_diagonal(offdiag, 0.0)

    if warm_start is not None:
        st = warm_start.state
        if st.get("Z") is None or st["Z"].shape != (p, p) or st.get("standardize") != standardize:
            raise ValueError("warm_start does not match this problem (p or standardize differ)")
        Z, U, F, S, Y = (st[k].copy() for k in ("Z", "U", "F", "S", "Y"))
        eta, mu = st["eta"], st["mu"]
    else:
        F = project_psd(Ms, eps=1e-6 * c)
        S = np.zeros((p, p))
        # start Θ near the ridge inverse of the PSD part: a feasible, well-conditioned point
        Z = np.linalg.inv(F + (rho + 1e-3 * c) * np.eye(p))
        Z = symmetrize(Z)
        U = np.zeros((p, p))
        Y = Z.copy()
    theta = Z.copy()
    history: list[dict] = []
    norm_M = np.linalg.norm(Ms)
    converged = False
    it = 0
    patience = 100
    mu_max = 1e4 * mu
    best_ratio = np.inf
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        theta = prox_neg_logdet(eta * (Z - U) - F, eta)
        Z_prev = Z
        Z = soft_threshold(theta + U, rho_mask / eta)
        U = U + theta - Z
        F = project_psd(Ms - S + (Y - theta) / mu)
        S_prev = S
        S = soft_threshold(Ms - F + Y / mu, lam / mu) * offdiag
        R = Ms - F - S
        Y = Y + mu * R

        r1 = np.linalg.norm(theta - Z)
        r2 = np.linalg.norm(R)
        s1 = eta * np.linalg.norm(Z - Z_prev)
        s2 = mu * np.linalg.norm(S - S_prev)
        eps1_pri = p * abs_tol + rel_tol * max(np.linalg.norm(theta), np.linalg.norm(Z))
        eps2_pri = p * abs_tol + rel_tol * max(norm_M, np.linalg.norm(F), np.linalg.norm(S))
        eps1_dual = p * abs_tol + rel_tol * eta * np.linalg.norm(U)
        eps2_dual = p * abs_tol + rel_tol * np.linalg.norm(Y)
        if record_history:
            history.append(dict(iter=it, r_theta=r1, r_fs=r2, s_theta=s1, s_fs=s2, eta=eta, mu=mu,
                                objective=rglasso_objective(Ms, theta, F, S, rho, lam, penalize_diagonal),
                                time=time.perf_counter() - t0))
        if r1 <= eps1_pri and r2 <= eps2_pri and s1 <= eps1_dual and s2 <= eps2_dual:
            converged = True
            break
        if adaptive:
            if r1 > 10 * s1:
                eta *= 2.0
                U /= 2.0
            elif s1 > 10 * r1:
                eta /= 2.0
                U *= 2.0
            if it % patience == 0:  # μ: doubled when the (F, S) residuals stop improving (_update_mu)
                mu, best_ratio = _update_mu(mu, max(r2 / eps2_pri, s2 / eps2_dual), best_ratio, mu_max)

    if not converged:
        warnings.warn(
            f"Rglasso ADMM did not converge in max_iter={max_iter} iterations (rel_tol={rel_tol:g}, "
            f"abs_tol={abs_tol:g}): primal residuals ||Θ-Z|| = {r1:.3g} (tolerance {eps1_pri:.3g}), "
            f"||M-F-S|| = {r2:.3g} (tolerance {eps2_pri:.3g}). Increase max_iter, loosen rel_tol, or fit again "
            f"with warm_start; results may be inaccurate (rho={rho:.4g}, lam={lam:.4g}).",
            ConvergenceWarning, stacklevel=2)

    state = dict(Z=Z, U=U, F=F, S=S, Y=Y, eta=eta, mu=mu, standardize=standardize)
    Dinv = np.outer(1.0 / d, 1.0 / d)  # Θ = D^{-1/2} Θs D^{-1/2} in the original scale; F, S scale by D^{1/2}
    return RglassoResult(
        precision=theta * np.outer(d, d),
        precision_sparse=Z * np.outer(d, d),
        covariance=F * Dinv,
        outliers=S * Dinv,
        n_iter=it,
        converged=converged,
        eta=eta,
        mu=mu,
        rho=rho,
        lam=lam,
        history=history,
        state=state,
    )


def _check_samples(X: object) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be (n_samples >= 2, n_features), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    return X


def _covariance(X: np.ndarray, assume_centered: bool = False) -> np.ndarray:
    """Empirical covariance ``(p, p)`` of ``X`` ``(n, p)`` with ``1/n`` (as scikit-learn's)."""
    Xc = X if assume_centered else X - X.mean(0)
    return Xc.T @ Xc / X.shape[0]


class RobustGraphicalLasso(EmpiricalCovariance):
    """scikit-learn style Rglasso estimator (slots beside ``sklearn.covariance``).

    ``fit(X)`` uses the empirical covariance of ``X`` (``1/n``, mean removed unless ``assume_centered``);
    ``fit(covariance=M, n_samples=n)`` takes a covariance directly (then ``location_`` is zero; ``n_samples`` is
    needed only for ``rho="auto"``). ``rho="auto"``, ``lam="auto"`` (the defaults) use :func:`default_penalties`
    (``ρ`` from p and n, ``λ = κ/ρ``); :class:`anomaly.rglasso_cv.RobustGraphicalLassoCV` selects them by
    cross-validation instead. After fitting:

    * ``covariance_`` — F, the cleaned covariance ``(p, p)``;
    * ``precision_`` — Θ, positive definite (used by :meth:`mahalanobis`); ``precision_sparse_`` — its ℓ1 copy Z
      with exact zeros (the estimated graph);
    * ``outliers_`` — S, the sparse corruption of the covariance;
    * ``rho_``, ``lam_`` — the penalties used; ``n_iter_``, ``converged_`` (False comes with a
      ``ConvergenceWarning``), ``result_`` (the full :class:`RglassoResult`), ``history_`` (per-iteration residuals
      when ``record_history``).

    Scoring conventions (read carefully, they differ on purpose):
    ``mahalanobis(X)`` is the squared Mahalanobis distance under ``(location_, precision_)``;
    ``score_samples(X) = -mahalanobis(X)`` (higher = more normal, like ``sklearn.covariance.EllipticEnvelope``);
    ``decision_function(X) = mahalanobis(X)`` (higher = more anomalous, the PyOD convention used by ``forge.fit``);
    ``predict(X)`` returns 1 for outliers, 0 for inliers, thresholded at the ``contamination`` quantile of the
    training scores (PyOD convention). ``decision_scores_`` / ``labels_`` hold the training-set values when fitted
    on ``X``.
    """

    def __init__(
        self,
        rho: float | str = "auto",
        lam: float | str = "auto",
        *,
        standardize: bool = True,
        penalize_diagonal: bool = False,
        outlier_diagonal: bool = False,
        adaptive: bool = True,
        max_iter: int = 1000,
        abs_tol: float = 1e-6,
        rel_tol: float = 1e-4,
        warm_start: bool = False,
        record_history: bool = False,
        contamination: float = 0.1,
        store_precision: bool = True,
        assume_centered: bool = False,
    ):
        super().__init__(store_precision=store_precision, assume_centered=assume_centered)
        self.rho = rho
        self.lam = lam
        self.standardize = standardize
        self.penalize_diagonal = penalize_diagonal
        self.outlier_diagonal = outlier_diagonal
        self.adaptive = adaptive
        self.max_iter = max_iter
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol
        self.warm_start = warm_start
        self.record_history = record_history
        self.contamination = contamination

    def fit(self, X: np.ndarray | None = None, y: object = None, *, covariance: np.ndarray | None = None,
            n_samples: int | None = None):
        """Fit on samples ``X`` ``(n, p)`` or on a covariance ``(p, p)`` (exactly one of the two; ``n_samples``
        goes with ``covariance`` when ``rho="auto"``)."""
        M, n_samples = self._prepare(X, covariance, n_samples)
        return self._fit_penalties(M, X, n_samples, self.rho, self.lam)

    def _solver_kwargs(self) -> dict:
        return dict(standardize=self.standardize, penalize_diagonal=self.penalize_diagonal,
                    outlier_diagonal=self.outlier_diagonal, adaptive=self.adaptive, max_iter=self.max_iter,
                    abs_tol=self.abs_tol, rel_tol=self.rel_tol)

    def _prepare(self, X: np.ndarray | None, covariance: np.ndarray | None,
                 n_samples: int | None) -> tuple[np.ndarray, int | None]:
        """Check the inputs, set ``location_``; returns the covariance ``(p, p)`` and the number of samples."""
        if (X is None) == (covariance is None):
            raise ValueError(f"{type(self).__name__}.fit needs exactly one of X or covariance=")
        if not 0.0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if X is None:
            M = check_covariance(covariance, "covariance")
            self.location_ = np.zeros(M.shape[0])
            return M, n_samples
        X = _check_samples(X)
        self.location_ = np.zeros(X.shape[1]) if self.assume_centered else X.mean(0)
        return _covariance(X, self.assume_centered), X.shape[0]

    def _fit_penalties(self, M: np.ndarray, X: np.ndarray | None, n_samples: int | None, rho: float | str,
                       lam: float | str):
        prev = getattr(self, "result_", None) if self.warm_start else None
        if prev is not None and prev.state["Z"].shape != M.shape:
            prev = None
        res = robust_graphical_lasso(M, rho, lam, n_samples=n_samples, warm_start=prev,
                                     record_history=self.record_history, **self._solver_kwargs())
        self.result_ = res
        self.rho_, self.lam_ = res.rho, res.lam
        self.covariance_ = res.covariance
        self.precision_ = res.precision
        self.precision_sparse_ = res.precision_sparse
        self.outliers_ = res.outliers
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.history_ = [{"step": h["iter"], "objective": h["objective"], "r_theta": h["r_theta"],
                          "r_fs": h["r_fs"]} for h in res.history]
        self.n_features_in_ = M.shape[0]
        if X is not None:
            X = np.asarray(X, dtype=float)
            self.decision_scores_ = self.mahalanobis(X)
            self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
            self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def get_precision(self) -> np.ndarray:
        return self.precision_

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """``-mahalanobis(X)``: higher = more normal (scikit-learn convention)."""
        return -self.mahalanobis(X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance: higher = more anomalous (PyOD / ``forge.fit`` convention)."""
        return self.mahalanobis(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 = outlier, 0 = inlier (needs a fit on samples, which sets ``threshold_``)."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError("predict needs a threshold: fit on samples X (not covariance=) first")
        return (self.decision_function(X) > self.threshold_).astype(int)
