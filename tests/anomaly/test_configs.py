"""The anomaly experiments compose with the project's root config and run through the fit engine."""

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sklearn.exceptions import ConvergenceWarning

from anomaly.rglasso import default_penalties
from forge.fit import run_fit

CONFIGS = Path(__file__).resolve().parents[2] / "forge" / "configs"

EXPERIMENTS = ["anomaly/mogaal_breast_cancer", "anomaly/sogaal_breast_cancer", "anomaly/rglasso_breast_cancer"]


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = _compose([f"experiment={experiment}", "seed=7"])
    assert cfg.engine == "fit" and cfg.experiment_name == experiment
    model = instantiate(cfg.model)
    seed_attr = "random_state" if "gaal" in experiment else None
    if seed_attr:
        assert getattr(model, seed_attr) == 7
    ds = instantiate(cfg.dataset)
    assert ds.name == "breast_cancer" and ds.path is None


def test_dataset_path_override_and_fit(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    X[:6] += 6
    y = np.r_[np.ones(6), np.zeros(114)].astype(int)
    np.savez(tmp_path / "toy.npz", X=X, y=y)
    cfg = _compose(["experiment=anomaly/rglasso_breast_cancer", f"dataset.path={tmp_path / 'toy.npz'}"])
    assert instantiate(cfg.dataset).name == "toy"
    metrics = run_fit(cfg, str(tmp_path / "run"))
    assert metrics["roc_auc"] > 0.95 and metrics["n_samples"] == 120
    cfg = _compose(["experiment=anomaly/sogaal_breast_cancer", "dataset=anomaly/file",
                    f"dataset.path={tmp_path / 'toy.npz'}", "model.stop_epochs=2", "model.progress=false"])
    metrics = run_fit(cfg, str(tmp_path / "run2"))
    assert (tmp_path / "run2" / "metrics.json").exists() and metrics["n_features"] == 4


def test_rglasso_config_uses_default_penalties_and_cv_config_composes(tmp_path):
    cfg = _compose(["experiment=anomaly/rglasso_breast_cancer"])
    assert (cfg.model.rho, cfg.model.lam) == ("auto", "auto")
    model = instantiate(cfg.model).fit(np.random.default_rng(0).normal(size=(378, 30)))
    assert (model.rho_, model.lam_) == default_penalties(30, 378)
    cfg = _compose(["experiment=anomaly/rglasso_breast_cancer", "model=anomaly/rglasso_cv"])
    assert type(instantiate(cfg.model)).__name__ == "RobustGraphicalLassoCV"
    cfg = _compose(["experiment=anomaly/mogaal_breast_cancer", "model.stop_epochs=auto"])
    m = instantiate(cfg.model)
    assert m.stop_epochs == "auto" and m.init == "official" and m.max_stop_epochs == 100


def test_fit_engine_reports_convergence_warnings(tmp_path):
    cfg = _compose(["experiment=anomaly/rglasso_breast_cancer", "model.max_iter=3"])
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):  # re-issued to the caller after the run
        metrics = run_fit(cfg, str(tmp_path))
    assert metrics["fit_warnings"] == 1 and metrics["converged"] is False
    assert json.loads((tmp_path / "metrics.json").read_text())["converged"] is False
    log = (tmp_path / "fit.log").read_text()
    assert "ConvergenceWarning: Rglasso ADMM did not converge in max_iter=3" in log
    assert "1 warning(s) during fit" in log  # the closing summary repeats it
    cfg = _compose(["experiment=anomaly/rglasso_breast_cancer"])
    metrics = run_fit(cfg, str(tmp_path / "ok"))
    assert metrics["fit_warnings"] == 0 and metrics["converged"] is True
