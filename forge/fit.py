"""Generic "fit engine" for estimators that are fitted in one call rather than trained by a runner loop.

``forge-train`` calls :func:`run_fit` when the composed config has ``engine: fit``. The config needs:

* ``dataset`` — ``_target_`` of an object with ``name`` and ``load() -> (X: (n, d) ndarray, y: (n,) ndarray | None)``
  (``y``: 1 = outlier, 0 = inlier);
* ``model`` — ``_target_`` of an estimator with ``fit(X)`` and ``decision_function(X) -> (n,)`` where a higher score
  means more anomalous; it may expose ``history_`` (a list of dicts of scalars, each with an optional ``step``);
* ``seed`` (int, default 0) — seeds ``random``, numpy and torch before anything is built; pass it on to the
  estimator with ``${seed}`` in the model yaml;
* optionally ``experiment_name``.

It writes into ``work_dir``: ``fit.log`` (mmengine ``MMLogger``, also to the console), ``metrics.json`` (flat dict
of final metrics — the same filename the runner uses, so sweep summaries read both), ``scalars.json`` (JSON lines:
the estimator's ``history_`` entries, then one line with the final metrics), ``scores.npz`` (``scores``, ``y``) and
``plots/score_hist.png`` (+ ``plots/loss_curve.png`` when there is a history). Metrics with labels: ``roc_auc``,
``average_precision``, ``precision_at_n`` (:mod:`forge.evaluation.outlier`); always ``fit_time_s``,
``score_time_s``, ``n_samples``, ``n_features``, ``fit_warnings`` (and ``n_outliers`` with labels; ``converged``
when the estimator has ``converged_``). Warnings raised during ``fit`` (e.g. scikit-learn's ``ConvergenceWarning``)
are collected, written to ``fit.log`` and repeated in the closing summary, then re-issued to the caller.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from forge.evaluation.outlier import outlier_metrics

__all__ = ["run_fit", "seed_everything"]

_RUN_IDS = itertools.count()


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy's global state and torch (CPU and CUDA) if torch is importable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency, but the engine does not need it
        return
    torch.manual_seed(seed)


def _instantiate(cfg: DictConfig, key: str) -> Any:
    from hydra.utils import instantiate

    node = cfg.get(key)
    if node is None or not isinstance(node, DictConfig) or "_target_" not in node:
        shown = OmegaConf.to_yaml(node).strip() if isinstance(node, DictConfig) else node
        raise ValueError(f"engine=fit needs `{key}._target_` in the config (got {shown!r})")
    try:
        return instantiate(node)
    except Exception as e:
        raise RuntimeError(f"could not instantiate `{key}` ({node._target_}): {e}") from e


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    return v if isinstance(v, (str, type(None))) else str(v)


def _plots(work_dir: Path, scores: np.ndarray, y: np.ndarray | None, history: list[dict], title: str) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = []
    plot_dir = work_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(scores, bins=40)
    if y is not None:
        ax.hist(scores[y == 0], bins=bins, alpha=0.6, label=f"inliers ({int((y == 0).sum())})")
        ax.hist(scores[y == 1], bins=bins, alpha=0.6, label=f"outliers ({int((y == 1).sum())})")
        ax.legend()
    else:
        ax.hist(scores, bins=bins)
    ax.set_xlabel("outlier score (higher = more anomalous)")
    ax.set_ylabel("count")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(plot_dir / "score_hist.png", dpi=100)
    out.append(str(plot_dir / "score_hist.png"))
    keys = sorted({k for h in history for k, v in h.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if history and keys:
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        steps = [h.get("step", i + 1) for i, h in enumerate(history)]
        for k in keys:
            ax.plot(steps, [h.get(k, np.nan) for h in history], label=k)
        ax.set_xlabel("step")
        ax.legend()
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(plot_dir / "loss_curve.png", dpi=100)
        out.append(str(plot_dir / "loss_curve.png"))
    return out


def run_fit(cfg: DictConfig, work_dir: str) -> dict:
    """Fit ``cfg.model`` on ``cfg.dataset``, score the same data, log and write the run files. Returns the metrics."""
    from mmengine.logging import MMLogger

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.get("seed", 0) or 0)
    name = str(cfg.get("experiment_name", None) or "fit")
    logger = MMLogger.get_instance(f"forge.fit.{os.getpid()}.{next(_RUN_IDS)}", logger_name="forge.fit",
                                   log_file=str(work / "fit.log"), log_level="INFO", file_mode="w")
    try:
        seed_everything(seed)
        dataset = _instantiate(cfg, "dataset")
        X, y = dataset.load()
        X = np.asarray(X, dtype=np.float64)
        y = None if y is None else np.asarray(y).astype(np.int64).ravel()
        ds_name = getattr(dataset, "name", type(dataset).__name__)
        logger.info(f"experiment {name}: dataset {ds_name} X{tuple(X.shape)}"
                    + (f", {int(y.sum())} labelled outliers" if y is not None else ", no labels") + f", seed {seed}")
        model = _instantiate(cfg, "model")
        logger.info(f"model {type(model).__module__}.{type(model).__name__}")
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X)
        fit_time = time.perf_counter() - t0
        fit_warnings = list({(w.category, str(w.message)): w for w in caught}.values())  # once per message
        for w in fit_warnings:
            logger.warning(f"during fit: {w.category.__name__}: {w.message}")
        t0 = time.perf_counter()
        scores = np.asarray(model.decision_function(X), dtype=np.float64).ravel()
        score_time = time.perf_counter() - t0
        if scores.shape[0] != X.shape[0]:
            raise ValueError(f"decision_function returned {scores.shape[0]} scores for {X.shape[0]} samples")

        metrics: dict[str, Any] = {}
        if y is not None:
            metrics.update(outlier_metrics(y, scores))
            metrics["n_outliers"] = int(y.sum())
        metrics.update(fit_time_s=fit_time, score_time_s=score_time, n_samples=int(X.shape[0]),
                       n_features=int(X.shape[1]), fit_warnings=len(fit_warnings))
        if hasattr(model, "converged_"):
            metrics["converged"] = bool(model.converged_)
        metrics = {k: _json_value(v) for k, v in metrics.items()}

        history = [dict(h) for h in (getattr(model, "history_", None) or []) if isinstance(h, dict)]
        with open(work / "scalars.json", "w") as fh:
            for i, h in enumerate(history):
                h.setdefault("step", i + 1)
                fh.write(json.dumps({k: _json_value(v) for k, v in h.items()}) + "\n")
            last = history[-1]["step"] if history else 0
            fh.write(json.dumps({**metrics, "step": _json_value(last)}) + "\n")
        with open(work / "metrics.json", "w") as fh:
            json.dump(metrics, fh, indent=2)
        np.savez(work / "scores.npz", scores=scores, y=y if y is not None else np.zeros(0, np.int64))
        plots = _plots(work, scores, y, history, f"{name} ({ds_name})")
        shown = ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
        logger.info(f"metrics: {shown}")
        logger.info(f"wrote {work / 'metrics.json'}, {work / 'scalars.json'}, {', '.join(plots)}")
        if fit_warnings:
            logger.warning(f"{len(fit_warnings)} warning(s) during fit, results may be unreliable: "
                           + " | ".join(f"{w.category.__name__}: {w.message}" for w in fit_warnings))
        for w in fit_warnings:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return metrics
    finally:
        for h in list(logger.handlers):
            if hasattr(h, "baseFilename"):
                h.close()
                logger.removeHandler(h)
