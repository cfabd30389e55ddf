"""forge.fit.run_fit: the generic fit engine (engine=fit) on hand-built configs."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from forge.fit import run_fit


class ToyData:
    """5 far-away outliers among 95 Gaussian inliers."""

    def __init__(self, labelled: bool = True, path: str | None = None):
        self.labelled = labelled
        self.name = "toy"

    def load(self):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(100, 3))
        X[:5] += 8.0
        y = np.r_[np.ones(5), np.zeros(95)].astype(int)
        return X, (y if self.labelled else None)


class NormScorer:
    """Estimator scoring by the distance to the mean; records a fake loss history and the seed it was given."""

    def __init__(self, seed: int = 0, history: bool = True):
        self.seed = seed
        self.history = history

    def fit(self, X):
        self.mean_ = X.mean(0)
        self.noise_ = np.random.rand()  # global numpy state: seeded by run_fit
        if self.history:
            self.history_ = [{"step": i + 1, "loss": 1.0 / (i + 1), "noise": self.noise_} for i in range(5)]
        return self

    def decision_function(self, X):
        return np.linalg.norm(X - self.mean_, axis=1)


def _cfg(**over):
    base = {
        "seed": 3,
        "experiment_name": "test/fit",
        "engine": "fit",
        "dataset": {"_target_": f"{__name__}.ToyData", "labelled": True, "path": None},
        "model": {"_target_": f"{__name__}.NormScorer", "seed": "${seed}"},
    }
    cfg = OmegaConf.create(base)
    return OmegaConf.merge(cfg, OmegaConf.create(over))


def test_run_fit_writes_metrics_scalars_plots(tmp_path):
    metrics = run_fit(_cfg(), str(tmp_path))
    assert metrics["roc_auc"] == 1.0 and metrics["average_precision"] == 1.0 and metrics["precision_at_n"] == 1.0
    assert metrics["n_outliers"] == 5 and metrics["n_samples"] == 100 and "seed" not in metrics
    assert metrics["fit_time_s"] >= 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    lines = [json.loads(line) for line in (tmp_path / "scalars.json").read_text().splitlines()]
    assert [line["loss"] for line in lines[:5]] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert lines[-1]["roc_auc"] == 1.0 and lines[-1]["step"] == 5
    assert (tmp_path / "plots" / "score_hist.png").stat().st_size > 0
    assert (tmp_path / "plots" / "loss_curve.png").stat().st_size > 0
    assert "roc_auc" in (tmp_path / "fit.log").read_text()
    assert np.load(tmp_path / "scores.npz")["scores"].shape == (100,)


def test_seeding_is_reproducible(tmp_path):
    def noise(run):
        return json.loads((tmp_path / run / "scalars.json").read_text().splitlines()[0])["noise"]

    run_fit(_cfg(), str(tmp_path / "a"))
    run_fit(_cfg(), str(tmp_path / "b"))
    run_fit(_cfg(seed=4), str(tmp_path / "c"))
    assert noise("a") == noise("b") != noise("c")  # numpy's global state was seeded from cfg.seed
    sa = np.load(tmp_path / "a" / "scores.npz")["scores"]
    np.testing.assert_array_equal(sa, np.load(tmp_path / "b" / "scores.npz")["scores"])


def test_unlabelled_data_and_no_history(tmp_path):
    cfg = _cfg(dataset={"labelled": False}, model={"history": False})
    metrics = run_fit(cfg, str(tmp_path))
    assert "roc_auc" not in metrics and metrics["n_samples"] == 100
    assert not (tmp_path / "plots" / "loss_curve.png").exists()
    assert len((tmp_path / "scalars.json").read_text().splitlines()) == 1


def test_missing_target_is_reported(tmp_path):
    cfg = _cfg()
    del cfg.model["_target_"]
    with pytest.raises(ValueError, match="model._target_"):
        run_fit(cfg, str(tmp_path))


def test_real_estimator_from_anomaly_configs(tmp_path):
    """The anomaly model/dataset yamls instantiate and fit through the engine (fast settings)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "forge" / "configs"
    model = OmegaConf.load(root / "model" / "anomaly" / "sogaal.yaml")
    data = OmegaConf.load(root / "dataset" / "anomaly" / "breast_cancer.yaml")
    cfg = OmegaConf.create({"seed": 0, "experiment_name": "anomaly/sogaal_breast_cancer", "engine": "fit"})
    cfg.model = model
    cfg.dataset = data
    cfg.model.stop_epochs = 3
    cfg.model.progress = False
    metrics = run_fit(cfg, str(tmp_path))
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["n_outliers"] == 21
    assert len((tmp_path / "scalars.json").read_text().splitlines()) == 3 * 3 + 1
