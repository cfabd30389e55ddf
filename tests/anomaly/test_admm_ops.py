"""Proximal operators of the Rglasso ADMM."""

import numpy as np
import pytest

from anomaly.admm_ops import check_covariance, project_psd, prox_neg_logdet, soft_threshold


def _sym(p, seed):
    A = np.random.default_rng(seed).normal(size=(p, p))
    return (A + A.T) / 2


def test_soft_threshold_values_and_prox_property():
    a = np.array([-3.0, -0.5, 0.0, 0.2, 2.0])
    np.testing.assert_allclose(soft_threshold(a, 1.0), [-2.0, 0.0, 0.0, 0.0, 1.0])
    # prox of tau*|x|: the result beats random perturbations on  tau|x| + 1/2 (x - a)^2
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    X = soft_threshold(A, 0.3)
    f = lambda Z: 0.3 * np.abs(Z).sum() + 0.5 * ((Z - A) ** 2).sum()  # noqa: E731
    for _ in range(50):
        assert f(X) <= f(X + 1e-3 * rng.normal(size=X.shape)) + 1e-12
    # array-valued threshold (unpenalised diagonal)
    tau = np.full((6, 6), 10.0)
    np.fill_diagonal(tau, 0.0)
    np.testing.assert_allclose(soft_threshold(A, tau), np.diag(np.diag(A)))
    with pytest.raises(ValueError, match="tau"):
        soft_threshold(A, -1.0)


def test_project_psd_is_nearest_psd():
    A = _sym(8, 1)
    P = project_psd(A)
    w, V = np.linalg.eigh(A)
    np.testing.assert_allclose(P, (V * np.maximum(w, 0)) @ V.T, atol=1e-12)
    assert np.linalg.eigvalsh(P).min() >= -1e-12
    # PSD input is returned unchanged; projection is idempotent; eps floor respected
    B = A @ A.T + np.eye(8)
    np.testing.assert_allclose(project_psd(B), B)
    np.testing.assert_allclose(project_psd(P, try_cholesky=False), P, atol=1e-12)
    assert np.linalg.eigvalsh(project_psd(A, eps=0.5)).min() >= 0.5 - 1e-12
    # nearest: no random PSD matrix is closer
    rng = np.random.default_rng(2)
    for _ in range(20):
        C = rng.normal(size=(8, 8))
        Q = P + 0.1 * C @ C.T
        assert np.linalg.norm(A - P) <= np.linalg.norm(A - Q) + 1e-12


def test_prox_neg_logdet_solves_stationarity():
    B = _sym(7, 3)
    for eta in (0.1, 1.0, 10.0):
        T = prox_neg_logdet(B, eta)
        assert np.linalg.eigvalsh(T).min() > 0
        np.testing.assert_allclose(eta * T - np.linalg.inv(T), B, atol=1e-9)
    with pytest.raises(ValueError):
        prox_neg_logdet(B, 0.0)


def test_check_covariance_errors():
    with pytest.raises(ValueError, match="square"):
        check_covariance(np.zeros((3, 4)), "M")
    M = np.eye(3)
    M[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_covariance(M, "M")
    M = np.eye(3)
    M[0, 1] = 0.5
    with pytest.raises(ValueError, match=r"not symmetric.*M\[0,1\]"):
        check_covariance(M, "M")
    # indefinite but symmetric is fine
    check_covariance(np.array([[1.0, 2.0], [2.0, 1.0]]))
