"""Rglasso ADMM: known answers, optimality conditions, planted-corruption recovery, estimator API."""

import numpy as np
import pytest
from sklearn.covariance import graphical_lasso

from anomaly.metrics import entry_detection_metrics, relative_error, support_metrics
from anomaly.rglasso import RobustGraphicalLasso, robust_graphical_lasso
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


def test_recovers_planted_corruption():
    prob = make_rglasso_problem(p=100, seed=1)
    model = RobustGraphicalLasso(rho=0.2, lam=1.0).fit(covariance=prob.M)
    assert model.converged_
    det = entry_detection_metrics(model.outliers_, prob.mask)
    assert det["auc"] >= 0.95, det
    assert det["density_ratio"] <= 3.0, det
    sup = support_metrics(model.precision_sparse_, prob.precision)
    assert sup["f1"] > 0.6, sup
    assert relative_error(model.covariance_, prob.M_clean) < relative_error(prob.M, prob.M_clean)


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
