"""Rglasso ADMM: known answers, optimality conditions, planted-corruption recovery, estimator API, default
penalties, convergence warnings, the μ rule."""

import warnings

import numpy as np
import pytest
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.base import clone
from sklearn.covariance import graphical_lasso
from sklearn.exceptions import ConvergenceWarning

import anomaly.rglasso as rg
from anomaly.metrics import entry_detection_metrics, relative_error, support_metrics
from anomaly.rglasso import DEFAULT_KAPPA, RobustGraphicalLasso, default_penalties, robust_graphical_lasso
from anomaly.synthetic import make_rglasso_problem


def test_no_corruption_agrees_with_graphical_lasso():
    prob = make_rglasso_problem(p=20, n=400, seed=1)  # the clean sample covariance is used
    M = prob.M_clean
    _, prec_sk = graphical_lasso(M, alpha=0.05, tol=1e-6, max_iter=1000)
    # lam large: S stays zero, the problem is the graphical lasso on M (diagonal unpenalised, as scikit-learn)
    res = robust_graphical_lasso(M, rho=0.05, lam=1e3, standardize=False, abs_tol=1e-9, rel_tol=1e-8,
                                 max_iter=5000)
    assert res.converged
    assert np.abs(res.outliers).max() == 0.0
    np.testing.assert_allclose(res.precision, prec_sk, atol=5e-4 * np.abs(prec_sk).max())
    np.testing.assert_allclose(res.covariance, M, atol=1e-6)
    # and the graphical-lasso optimality conditions themselves: W = Θ^{-1}, W_ii = M_ii, W_ij - M_ij = ρ sign(Θ_ij)
    # on the support, |W_ij - M_ij| <= ρ off it
    W, Z = np.linalg.inv(res.precision), res.precision_sparse
    off = ~np.eye(20, dtype=bool)
    np.testing.assert_allclose(np.diag(W), np.diag(M), atol=1e-5)
    on = (Z != 0) & off
    np.testing.assert_allclose((W - M)[on], 0.05 * np.sign(Z[on]), atol=1e-5)
    assert np.abs((W - M)[(Z == 0) & off]).max() <= 0.05 + 1e-5


def test_diagonal_covariance_known_answer():
    d = np.array([0.5, 1.0, 2.0, 4.0])
    res = robust_graphical_lasso(np.diag(d), rho=0.1, lam=0.5, abs_tol=1e-10, rel_tol=1e-9, max_iter=5000)
    np.testing.assert_allclose(res.precision, np.diag(1 / d), atol=1e-6)
    np.testing.assert_allclose(res.covariance, np.diag(d), atol=1e-6)
    assert np.abs(res.outliers).max() < 1e-9
    assert np.count_nonzero(res.precision_sparse - np.diag(np.diag(res.precision_sparse))) == 0


def test_fixed_point_satisfies_optimality_conditions():
    """KKT of the Rglasso problem at the ADMM output (derivation in docs/anomaly.md)."""
    prob = make_rglasso_problem(p=30, seed=4)
    rho, lam = 0.2, 1.0
    res = robust_graphical_lasso(prob.M, rho=rho, lam=lam, standardize=False, abs_tol=1e-9, rel_tol=1e-8,
                                 max_iter=20000)
    assert res.converged
    st = res.state
    T, Z, F, S, Y = res.precision, res.precision_sparse, st["F"], st["S"], st["Y"]
    tol = 1e-4
    np.testing.assert_allclose(T, Z, atol=tol)  # Θ = Z
    np.testing.assert_allclose(prob.M, F + S, atol=tol)  # M = F + S
    assert np.linalg.eigvalsh(F).min() > -tol  # F ⪰ 0
    # S-step: Y ∈ λ ∂||S||_1 off the diagonal
    off = ~np.eye(30, dtype=bool)
    assert np.abs(Y[off]).max() <= lam + tol
    nz = (S != 0) & off
    assert nz.any()
    np.testing.assert_allclose(Y[nz], lam * np.sign(S[nz]), atol=tol)
    # F-step: Θ - Y = Λ ⪰ 0 with Λ F = 0 (complementarity of the PSD constraint)
    Lam = T - Y
    assert np.linalg.eigvalsh(Lam).min() > -1e-3
    assert np.abs(Lam @ F).max() < 1e-3
    # Θ-step: -Θ^{-1} + F + ρ G = 0 with G ∈ ∂||Z||_1 off the diagonal, G = 0 on it
    G = (np.linalg.inv(T) - F) / rho
    assert np.abs(np.diag(G)).max() < 1e-3 / rho
    zo = (Z != 0) & off
    np.testing.assert_allclose(G[zo], np.sign(Z[zo]), atol=1e-2)
    assert np.abs(G[(Z == 0) & off]).max() <= 1 + 1e-2


def _acceptance(p: int, seed: int) -> tuple[dict, dict, RobustGraphicalLasso, object]:
    prob = make_rglasso_problem(p=p, seed=seed)
    model = RobustGraphicalLasso().fit(covariance=prob.M, n_samples=prob.X.shape[0])  # default penalties
    return entry_detection_metrics(model.outliers_, prob.mask), support_metrics(model.precision_sparse_,
                                                                                 prob.precision), model, prob


# Where the documented results (docs/benchmarks.md#anomaly-rglasso-selection, "auto" rows, 1 % corruption) say the
# acceptance bar holds: p = 100 and p = 200. At p = 50 (n = 250) it does not hold reliably: seed 0 gives an entry AUC
# of 0.915 (test_acceptance_does_not_hold_at_p50), seed 1 0.958.
@pytest.mark.parametrize("p,seed", [(100, 0), (100, 1), (100, 2), (200, 0)])
def test_recovers_planted_corruption(p, seed):
    det, sup, model, prob = _acceptance(p, seed)
    assert model.converged_
    assert det["auc"] >= 0.95, det
    assert det["density_ratio"] <= 3.0, det
    assert sup["f1"] > 0.6, sup
    assert relative_error(model.covariance_, prob.M_clean) < relative_error(prob.M, prob.M_clean)


@pytest.mark.xfail(strict=True, reason="documented: at p = 50 (n = 250), seed 0, the entry AUC is below 0.95")
def test_acceptance_does_not_hold_at_p50():
    det, sup, model, _ = _acceptance(50, 0)
    assert model.converged_ and det["density_ratio"] <= 3.0 and sup["f1"] > 0.6  # these do hold
    assert det["auc"] >= 0.95, det


def test_estimator_api_and_warm_start():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    X[:10] += 6 * rng.normal(size=(10, 8))
    m = RobustGraphicalLasso(rho=0.1, lam=1.0, contamination=0.05, record_history=True).fit(X)
    for attr in ("covariance_", "precision_", "outliers_", "location_"):
        assert getattr(m, attr) is not None
    np.testing.assert_allclose(m.mahalanobis(X), m.decision_function(X))
    np.testing.assert_allclose(m.score_samples(X), -m.decision_function(X))
    assert m.decision_scores_[:10].mean() > m.decision_scores_[10:].mean()
    assert m.predict(X).sum() == m.labels_.sum() > 0
    assert len(m.history_) == m.n_iter_
    n_cold = m.n_iter_
    m.set_params(warm_start=True)
    m.fit(X)
    assert m.n_iter_ < n_cold
    with pytest.raises(ValueError, match="exactly one"):
        RobustGraphicalLasso().fit()
    with pytest.raises(ValueError, match="square"):
        RobustGraphicalLasso().fit(covariance=np.ones((2, 3)))
    bad = np.eye(3)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        RobustGraphicalLasso().fit(covariance=bad)


def test_default_penalties_banerjee_rule():
    p, n, alpha = 100, 500, 0.05
    rho, lam = default_penalties(p, n)
    t = student_t.isf(alpha / (2 * p * p), n - 2)  # Banerjee et al. (2008), Theorem 2, unit variances
    assert rho == pytest.approx(t / np.sqrt(n - 2 + t * t)) and rho == pytest.approx(0.2025, abs=1e-3)
    assert lam * rho == pytest.approx(DEFAULT_KAPPA)
    assert default_penalties(100, 2000)[0] < rho < default_penalties(400, 500)[0]  # falls with n, grows with p
    # large n: z / sqrt(n) with z the normal quantile, below sqrt(2 log(2 p^2 / alpha) / n) (the sqrt(log p / n) rate)
    r = default_penalties(100, 10**6)[0]
    assert r == pytest.approx(norm.isf(alpha / (2 * 100**2)) / 1e3, rel=1e-3)
    assert r < np.sqrt(2 * np.log(2 * 100**2 / alpha) / 10**6)
    with pytest.raises(ValueError, match="n_samples"):
        robust_graphical_lasso(np.eye(3))  # rho="auto" without n
    with pytest.raises(ValueError, match="n_samples"):
        RobustGraphicalLasso().fit(covariance=np.eye(3))
    res = robust_graphical_lasso(np.eye(3), rho=0.1)  # lam="auto" only needs rho
    assert res.rho == 0.1 and res.lam == pytest.approx(DEFAULT_KAPPA / 0.1)
    with pytest.raises(ValueError, match="rho must be"):
        robust_graphical_lasso(np.eye(3), rho="big")


def test_estimator_defaults_equal_function_defaults():
    prob = make_rglasso_problem(p=15, seed=2)
    n = prob.X.shape[0]
    m = RobustGraphicalLasso().fit(prob.X)
    res = robust_graphical_lasso(np.cov(prob.X.T, bias=True), n_samples=n)
    assert (m.rho_, m.lam_) == (res.rho, res.lam) == default_penalties(15, n)
    np.testing.assert_allclose(m.outliers_, res.outliers)
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "result_")


def test_non_convergence_warns():
    prob = make_rglasso_problem(p=20, seed=0)
    with pytest.warns(ConvergenceWarning, match=r"max_iter=3 .*Increase max_iter"):
        m = RobustGraphicalLasso(max_iter=3).fit(covariance=prob.M, n_samples=100)
    assert not m.converged_ and m.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a converged fit is silent
        assert RobustGraphicalLasso().fit(covariance=prob.M, n_samples=100).converged_


def test_mu_rule_compares_with_the_best_ratio():
    mu, best, mus = 1.0, np.inf, []
    for ratio in [10.0, 5.0, 7.0, 6.0, 4.0]:
        mu, best = rg._update_mu(mu, ratio, best, mu_max=100.0)
        mus.append(mu)
    # 6 is below the previous ratio 7 but not below the best 5: still no progress, so μ doubles again
    assert mus == [1.0, 1.0, 2.0, 4.0, 4.0] and best == 4.0
    assert rg._update_mu(64.0, 9.0, 5.0, mu_max=100.0)[0] == 100.0  # capped
    assert rg._update_mu(100.0, 9.0, 5.0, mu_max=100.0) == (100.0, 5.0)


def test_solver_passes_the_best_ratio(monkeypatch):
    calls = []
    real = rg._update_mu

    def spy(mu, ratio, best, mu_max):
        calls.append((ratio, best))
        return real(mu, ratio, best, mu_max)

    monkeypatch.setattr(rg, "_update_mu", spy)
    prob = make_rglasso_problem(p=30, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        robust_graphical_lasso(prob.M, rho=0.2, lam=2.0, max_iter=400, abs_tol=0.0, rel_tol=1e-12)
    assert len(calls) == 4  # every 100 iterations
    for i, (_, best) in enumerate(calls):
        assert best == min([np.inf] + [r for r, _ in calls[:i]])
