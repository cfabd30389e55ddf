"""CrowdHuman AP, recall and MR^-2 from the Caltech matches (CrowdDet's ``compute_APMR``). Pure numpy."""

from __future__ import annotations

import math

import numpy as np

from forge.evaluation.crowdhuman.matching import Matched
from forge.evaluation.crowdhuman.prepare import Prepared

__all__ = ["MR_REFS", "ap_mr"]

# Caltech reference FPPI points for MR^-2 (as written in CrowdDet / P. Dollar's toolbox).
MR_REFS = (0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000)


def ap_mr(p: Prepared, m: Matched, precision_eps: float, mr_sampling: str) -> dict:
    """``AP``, ``recall``, ``MR-2`` and the counts ``num_tp``, ``num_fp``, ``num_dt_ignored`` (CrowdDet's rules)."""
    keep = m.tp | ~m.dt_in_ign_apmr
    score = p.dt_score[keep]
    tp = m.tp[keep]
    order = np.argsort(-score, kind="stable")  # ties: image order, then within-image order (CrowdDet's stable sort)
    tp = tp[order]
    n_pos = int(p.n_gtn.sum())
    tpc = np.cumsum(tp, dtype=np.float64)
    fpc = np.cumsum(~tp, dtype=np.float64)
    out = {
        "num_tp": int(tp.sum()),
        "num_fp": int((~tp).sum()),
        "num_dt_ignored": int((~keep).sum()),
    }
    if n_pos == 0:
        out.update(AP=math.nan, recall=math.nan, **{"MR-2": math.nan})
        return out
    if tp.size == 0:
        out.update(AP=0.0, recall=0.0, **{"MR-2": 1.0})
        return out
    recall = tpc / n_pos
    precision = tpc / (tpc + fpc + precision_eps)
    ap = float(np.sum((recall[1:] - recall[:-1]) * ((precision[:-1] + precision[1:]) / 2)))
    fppi = fpc / p.n_images
    miss = 1.0 - recall
    refs = np.asarray(MR_REFS)
    if mr_sampling == "crowddet":
        idx = np.searchsorted(fppi, refs, side="left")  # first FPPI >= ref (fppi is non-decreasing)
        idx[idx >= fppi.shape[0]] = fppi.shape[0] - 1
    elif mr_sampling == "noh":
        rec = np.minimum.accumulate(recall[::-1])[::-1]  # monotone recall (no-op for cumulative counts)
        miss = 1.0 - rec
        idx = np.searchsorted(fppi, refs, side="right") - 1  # last FPPI <= ref; -1 wraps to the last point
    else:
        raise ValueError(f"mr_sampling must be 'crowddet' or 'noh', got {mr_sampling!r}")
    with np.errstate(divide="ignore"):
        mr = float(np.exp(np.log(miss[idx]).mean()))
    out.update(AP=ap, recall=float(recall[-1]), **{"MR-2": mr})
    return out
