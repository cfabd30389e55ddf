"""Robust PCA (PCP, inexact ALM), the synthetic generator and the Rglasso / outlier metrics."""

import numpy as np
import pytest

from anomaly.metrics import entry_detection_metrics, relative_error, support_metrics
from anomaly.rpca import RobustPCA, principal_component_pursuit
from anomaly.synthetic import make_rglasso_problem
from forge.evaluation.outlier import average_precision, outlier_metrics, precision_at_n, roc_auc


def test_pcp_recovers_low_rank_plus_sparse():
    rng = np.random.default_rng(0)
    L0 = rng.normal(size=(80, 3)) @ rng.normal(size=(3, 60))
    S0 = np.zeros_like(L0)
    idx = rng.random(L0.shape) < 0.05
    S0[idx] = rng.choice([-10.0, 10.0], size=idx.sum())
    L, S, it = principal_component_pursuit(L0 + S0)
    assert relative_error(L, L0) < 1e-4 and relative_error(S, S0) < 1e-4 and it < 200


def test_rpca_detector_scores_outlier_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 8)) + 0.05 * rng.normal(size=(200, 8))
    X[:8] += rng.normal(scale=5, size=(8, 8))
    y = np.r_[np.ones(8), np.zeros(192)].astype(int)
    m = RobustPCA(contamination=0.05).fit(X)
    assert roc_auc(y, m.decision_scores_) > 0.95
    np.testing.assert_array_equal(m.predict(X), m.labels_)


def test_synthetic_generator_properties():
    prob = make_rglasso_problem(p=40, seed=0)
    assert np.allclose(np.diag(prob.covariance), 1.0)
    assert np.linalg.eigvalsh(prob.precision).min() > 0
    assert prob.mask.sum() == 2 * round(0.01 * 40 * 39 / 2) and np.array_equal(prob.mask, prob.mask.T)
    assert not prob.mask.diagonal().any()
    np.testing.assert_allclose(prob.M - prob.S, prob.M_clean)
    assert np.linalg.eigvalsh(prob.M).min() < 0  # gross corruption: indefinite, GraphicalLasso refuses it
    assert np.array_equal(make_rglasso_problem(p=40, seed=0).M, prob.M)


def test_rglasso_metrics():
    T = np.array([[2.0, 0.5, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 2.0]])
    E = np.array([[2.0, 0.4, 0.3], [0.4, 2.0, 0.0], [0.3, 0.0, 2.0]])
    assert support_metrics(E, T) == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    mask = np.zeros((3, 3), bool)
    mask[0, 2] = mask[2, 0] = True
    d = entry_detection_metrics(E - np.diag(np.diag(E)), mask)
    assert d["recall"] == 1.0 and d["precision"] == 0.5 and d["density_ratio"] == 2.0
    assert 0.0 <= d["auc"] <= 1.0


def test_outlier_metrics():
    y = np.array([0, 0, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.9, 0.3, 0.8])
    assert outlier_metrics(y, s) == {"roc_auc": 1.0, "average_precision": 1.0, "precision_at_n": 1.0}
    assert roc_auc(y, -s) == 0.0
    assert precision_at_n(y, np.array([0.9, 0.2, 0.8, 0.3, 0.1])) == 0.5
    assert np.isnan(average_precision(np.zeros(5), s))
    with pytest.raises(ValueError, match="differ"):
        roc_auc(y, s[:3])
