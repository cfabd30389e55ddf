"""Outlier detection papers: Robust Graphical Lasso (arXiv 1811.04277) and SO-/MO-GAAL (TKDE 2019).

``docs/anomaly.md`` has the commands, decisions and benchmark numbers.
"""

from .admm_ops import check_covariance, project_psd, prox_neg_logdet, soft_threshold
from .data import OutlierDataset, load_breast_cancer, load_csv, load_mat, load_npz
from .rglasso import RglassoResult, RobustGraphicalLasso, robust_graphical_lasso
from .rpca import RobustPCA, principal_component_pursuit
from .synthetic import make_rglasso_problem

__all__ = [
    "check_covariance", "project_psd", "prox_neg_logdet", "soft_threshold",
    "OutlierDataset", "load_breast_cancer", "load_csv", "load_mat", "load_npz",
    "RglassoResult", "RobustGraphicalLasso", "robust_graphical_lasso",
    "RobustPCA", "principal_component_pursuit", "make_rglasso_problem",
    "SOGAAL", "MOGAAL",
]


def __getattr__(name: str):  # torch is imported only when the GAAL models are asked for
    if name in ("SOGAAL", "MOGAAL"):
        from . import gaal

        return getattr(gaal, name)
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
