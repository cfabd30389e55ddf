"""SO-/MO-GAAL: score direction (1 - D), sub-generator targets and shares, optimiser, determinism."""

import numpy as np
import pytest
import torch

from anomaly.data import load_breast_cancer
from anomaly.gaal import MOGAAL, SOGAAL, Discriminator, KerasSGD, SubGenerators, fake_shares, quantile_targets
from forge.evaluation.outlier import roc_auc


@pytest.fixture(scope="module")
def wbc():
    return load_breast_cancer()


def test_fake_shares_follow_official_slicing():
    s = fake_shares(500, 10)
    assert s == [90, 81, 72, 63, 54, 45, 36, 27, 18, 14]  # 9 * (k - i), remainder 5 to the last
    assert sum(s) == 500
    for B in (55, 378, 499, 1000):
        s = fake_shares(B, 10)
        unit = B // 55
        assert sum(s) == B
        assert s[:-1] == [(10 - i) * unit for i in range(9)]
    assert fake_shares(7, 1) == [7]


def test_quantile_targets_are_i_over_k_quantiles():
    v = torch.rand(1001, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = quantile_targets(v, 10)
    np.testing.assert_allclose(t.numpy(), np.quantile(v.numpy(), np.arange(10) / 10))
    assert t[0] == v.min()


def test_mogaal_targets_use_whole_dataset():
    m = MOGAAL(k=4)
    D = Discriminator(3, 5, generator=torch.Generator().manual_seed(1))
    X = torch.rand(50, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        p = torch.sigmoid(D(X)).numpy()
        np.testing.assert_allclose(m._targets(D, X).numpy(), np.quantile(p, [0, 0.25, 0.5, 0.75]), rtol=1e-6)
    assert torch.equal(SOGAAL()._targets(D, X), torch.ones(1))


def test_keras_sgd_semantics():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = KerasSGD([w], lr=0.1, momentum=0.9, decay=0.5)
    v, x = 0.0, 1.0
    for t in range(4):
        w.grad = torch.tensor([2.0])
        opt.step()
        v = 0.9 * v - 0.1 / (1 + 0.5 * t) * 2.0
        x += v
        assert w.item() == pytest.approx(x)


def test_networks_match_paper():
    G = SubGenerators(3, 4)
    z = torch.rand(3, 5, 4)
    torch.testing.assert_close(G(z), z)  # identity init, ReLU keeps U(0,1) noise unchanged
    D = Discriminator(30, 20, generator=torch.Generator().manual_seed(0))
    assert D.fc1.out_features == 20 and D.fc2.out_features == 1
    assert D.fc1.weight.abs().max() <= 2 * (1 / 30) ** 0.5 / 0.8796256610342398 + 1e-6  # truncated at 2 std


def test_mogaal_score_direction(wbc):
    """Paper settings (k=10, lr_d 0.01, lr_g 1e-4, momentum 0.9, stop_epochs 20): 1 - D ranks outliers high."""
    X, y = wbc
    aucs, raw = [], []
    for seed in range(3):
        m = MOGAAL(stop_epochs=20, random_state=seed, progress=False).fit(X)
        aucs.append(roc_auc(y, m.decision_scores_))
        raw.append(roc_auc(y, m.discriminator_output(X)))
        np.testing.assert_allclose(m.decision_function(X), 1.0 - m.discriminator_output(X))
    assert np.mean(aucs) > 0.85, aucs
    assert np.mean(raw) < 0.15, raw  # the shipped-PyOD sign (raw D) would fail the check above


def test_sogaal_score_direction(wbc):
    X, y = wbc
    aucs = [roc_auc(y, SOGAAL(stop_epochs=20, random_state=s, progress=False).fit(X).decision_scores_)
            for s in range(3)]
    assert np.mean(aucs) > 0.7, aucs


def test_stop_node_determinism_and_predict(wbc):
    X, _ = wbc
    X = X[:260]
    a = MOGAAL(k=3, stop_epochs=2, batch_size=100, random_state=5, progress=False, contamination=0.1).fit(X)
    b = MOGAAL(k=3, stop_epochs=2, batch_size=100, random_state=5, progress=False, contamination=0.1).fit(X)
    c = MOGAAL(k=3, stop_epochs=2, batch_size=100, random_state=6, progress=False, contamination=0.1).fit(X)
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)
    assert not np.array_equal(a.decision_scores_, c.decision_scores_)
    # 260 // 100 = 2 batches per epoch (remainder dropped); 6 epochs; generators updated in the first 2 only
    assert a.n_discriminator_updates_ == 12 and a.n_generator_updates_ == 4
    assert [h["generator_trained"] for h in a.history_] == [True, True, False, False, False, False]
    assert a.labels_.sum() == pytest.approx(0.1 * len(X), abs=2)
    np.testing.assert_array_equal(a.predict(X), a.labels_)
    assert a.decision_scores_.min() >= 0 and a.decision_scores_.max() <= 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="stop_epochs"):
        SOGAAL(stop_epochs=0).fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="NaN"):
        SOGAAL(progress=False).fit(np.full((10, 2), np.nan))
    m = SOGAAL(stop_epochs=1, progress=False).fit(np.random.default_rng(0).random((20, 3)))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        m.decision_function(np.zeros((4, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs(wbc):
    X, y = wbc
    m = MOGAAL(stop_epochs=5, device="cuda", progress=False).fit(X)
    assert m.device_.type == "cuda"
    assert np.isfinite(m.decision_scores_).all()


def test_forward_shares_matches_batched_forward():
    G = SubGenerators(3, 4)
    with torch.no_grad():
        for prm in G.parameters():
            prm.add_(0.1 * torch.randn(prm.shape, generator=torch.Generator().manual_seed(0)))
        z = torch.rand(10, 4)
        shares = [5, 3, 2]
        full = G(z.expand(3, 10, 4))
        expect = torch.cat([full[0, :5], full[1, 5:8], full[2, 8:]])
        torch.testing.assert_close(G.forward_shares(z, shares), expect)
