"""RobustGraphicalLassoCV: held-out scores against a hand computation, choice = argmax, refit, cloning."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold

from anomaly.rglasso import RobustGraphicalLasso, default_penalties, robust_graphical_lasso
from anomaly.rglasso_cv import RobustGraphicalLassoCV, default_grid, rglasso_cv_scores
from anomaly.synthetic import make_rglasso_problem


def _cov(X):
    Xc = X - X.mean(0)
    return Xc.T @ Xc / len(X)


@pytest.fixture(scope="module")
def prob():
    return make_rglasso_problem(p=12, n=240, corruption=0.03, seed=5)


def test_scores_are_held_out_gaussian_log_likelihood(prob):
    X = prob.X
    folds = [(_cov(X[tr]) + prob.S, _cov(X[te]) + prob.S) for tr, te in KFold(2).split(X)]
    scores, converged = rglasso_cv_scores(folds, [0.1, 0.3], [1.0, 4.0])
    assert scores.shape == converged.shape == (2, 2, 2) and converged.all()
    # one entry by hand: cold-started fit on the training fold, then the Gaussian log-likelihood per sample of
    # the test fold, (log det Θ - tr(M Θ) - p log 2π) / 2 (warm starts change the iterate only within tolerance)
    M_tr, M_te = folds[1]
    theta = robust_graphical_lasso(M_tr, 0.3, 1.0).precision
    ll = 0.5 * (np.linalg.slogdet(theta)[1] - np.sum(M_te * theta) - 12 * np.log(2 * np.pi))
    assert scores[1, 0, 1] == pytest.approx(ll, abs=1e-3 * abs(ll))


def test_cv_picks_the_best_mean_score_and_refits(prob):
    rhos, lams = [0.1, 0.3], [0.5, 2.0, 8.0]
    m = RobustGraphicalLassoCV(rhos=rhos, lams=lams, cv=KFold(3)).fit(prob.X, covariance_offset=prob.S)
    res = m.cv_results_
    assert len(res["mean_test_score"]) == 6 and m.best_index_ == int(np.argmax(res["mean_test_score"]))
    np.testing.assert_allclose(res["mean_test_score"],
                               np.mean([res[f"split{k}_test_score"] for k in range(3)], axis=0))
    assert (m.rho_, m.lam_) == (res["rho"][m.best_index_], res["lam"][m.best_index_])
    # the same folds by hand give the same scores
    folds = [(_cov(prob.X[tr]) + prob.S, _cov(prob.X[te]) + prob.S) for tr, te in KFold(3).split(prob.X)]
    np.testing.assert_allclose(rglasso_cv_scores(folds, rhos, lams)[0].mean(2).ravel(), res["mean_test_score"])
    # refit on all the data with the chosen penalties == the plain estimator on the corrupted covariance
    ref = RobustGraphicalLasso(rho=m.rho_, lam=m.lam_).fit(covariance=_cov(prob.X) + prob.S)
    np.testing.assert_allclose(m.outliers_, ref.outliers_)
    np.testing.assert_allclose(m.precision_, ref.precision_)
    assert m.decision_scores_.shape == (len(prob.X),)
    assert isinstance(m.best_on_edge_, bool)


def test_default_grid_and_clone(prob):
    n, p = prob.X.shape
    rhos, lams = default_grid(p, n)
    rho0, lam0 = default_penalties(p, n)
    assert rhos[1] == pytest.approx(rho0) and lams[1] == pytest.approx(lam0) and len(rhos) == len(lams) == 3
    m = RobustGraphicalLassoCV(cv=2, max_iter=500)
    c = clone(m)
    assert c.get_params() == m.get_params() and "rho" not in c.get_params() and "lams" in c.get_params()
    with pytest.raises(ValueError, match="covariance_offset"):
        m.fit(prob.X, covariance_offset=np.eye(3))


@pytest.mark.filterwarnings("ignore:Rglasso ADMM did not converge")  # the refit's own warning
def test_cv_counts_non_converged_grid_fits(prob):
    with pytest.warns(ConvergenceWarning, match=r"of 2 grid fits did not converge"):
        m = RobustGraphicalLassoCV(rhos=[0.2], lams=[1.0], cv=2, max_iter=2).fit(prob.X)
    assert m.cv_results_["converged"].tolist() == [0.0]
