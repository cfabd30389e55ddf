"""Why NOH-NMS moves MR^-2: the numbers ``make demo-nohnms`` prints beside its table (``docs/nohnms.md``, "Why").

* :func:`miss_at_refs`: the miss rate at each of MR^-2's nine FPPI points (their log-average is MR^-2) and the
  false positives in score order, each with its best IoU with a person (> 0.5: a duplicate of a person already
  found; below: a poorly localised box);
* :func:`added_detections`: what NOH-NMS keeps that greedy NMS removes, split into true and false positives by the
  evaluator's own matching, by eased score;
* :func:`hallucination_stats`: where the hallucinated neighbours lie relative to their own box and to the real
  neighbour (NOH-NMS's Gaussian, sigma 0.2 in delta space, is centred on them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from forge.data.crowdhuman_reader import DTRecord, GTRecord
from forge.evaluation.crowdhuman.apmr import MR_REFS
from forge.evaluation.crowdhuman.matching import Matched
from forge.evaluation.crowdhuman.prepare import Prepared
from forge.ops import box_iou

__all__ = ["added_detections", "hallucination_stats", "miss_at_refs"]


def _matched(gts: Sequence[GTRecord], dts: Sequence[DTRecord]) -> tuple[Prepared, Matched]:
    p = Prepared(gts, dts, "fbox", True, "empty")
    return p, Matched(p, 0.5)


def miss_at_refs(gts: Sequence[GTRecord], dts: Sequence[DTRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(miss (9,), fp_best_iou (F,))``: the miss rate read at each FPPI point of ``MR_REFS`` (the CrowdHuman rule:
    first point at or past it, else the last; ``exp(mean(log(miss)))`` is the evaluator's MR^-2) and, for the
    false positives in descending score order, their largest IoU with a non-ignored person of their image."""
    p, m = _matched(gts, dts)
    keep = m.tp | ~m.dt_in_ign_apmr
    rows = np.nonzero(keep)[0]
    order = np.argsort(-p.dt_score[keep], kind="stable")
    rows = rows[order]
    tp = m.tp[rows]
    fppi = np.cumsum(~tp) / p.n_images
    miss = 1.0 - np.cumsum(tp) / max(int(p.n_gtn.sum()), 1)
    if rows.size == 0:
        return np.ones(len(MR_REFS)), np.zeros(0)
    idx = np.minimum(np.searchsorted(fppi, np.asarray(MR_REFS), side="left"), fppi.shape[0] - 1)
    best = []
    for j in rows[~tp]:
        g = p.gtn_boxes[p.gtn_img == p.dt_img[j]]
        if g.shape[0] == 0:
            best.append(0.0)
            continue
        b = p.dt_boxes[j]
        inter = (np.clip(np.minimum(g[:, 2], b[2]) - np.maximum(g[:, 0], b[0]), 0, None)
                 * np.clip(np.minimum(g[:, 3], b[3]) - np.maximum(g[:, 1], b[1]), 0, None))
        union = (b[2] - b[0]) * (b[3] - b[1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
        best.append(float((inter / np.maximum(union, 1e-6)).max()))
    return miss[idx], np.asarray(best)


def added_detections(gts: Sequence[GTRecord], dts: Sequence[DTRecord], kept: dict, base_kept: dict) -> dict:
    """Detections of ``dts`` (NOH-NMS) whose candidate greedy NMS did not keep.

    Args:
        gts, dts: records of the same images (``dts`` in each image's descending score order, as NMS returns them).
        kept: ``{ID: (K,) candidate indices of dts' boxes}``; base_kept: ``{ID: candidate indices}`` of greedy NMS.

    Returns:
        ``{"tp": (A,) bool, "fp": (A,) bool, "scores": (A,) eased scores}`` (neither tp nor fp: in an ignore region).
    """
    p, m = _matched(gts, dts)
    start = np.concatenate([[0], np.cumsum(p.n_dt)])
    rows = []
    for i, key in enumerate(p.ids):
        if key not in kept:
            continue
        base = set(base_kept[key].tolist())
        for rank, ci in enumerate(kept[key].tolist()):
            if ci not in base:
                rows.append(start[i] + rank)
    rows = np.asarray(rows, dtype=np.int64)
    return {"tp": m.tp[rows], "fp": ~m.tp[rows] & ~m.dt_in_ign_apmr[rows], "scores": p.dt_score[rows]}


def hallucination_stats(boxes: Sequence[torch.Tensor], overlap_boxes: Sequence[torch.Tensor],
                        gt_boxes: Sequence[torch.Tensor]) -> dict:
    """Where the hallucinator puts each foreground box's neighbour, over images.

    Args (lists over images): ``boxes (N_i, 4)`` detections (e.g. candidates scoring > 0.5), ``overlap_boxes
    (N_i, 4)`` their hallucinated neighbours, ``gt_boxes (G_i, 4)`` persons; xyxy in the same coordinates.

    Returns, over boxes whose best person IoU is >= 0.5 and whose second-best (the real neighbour) is > 0.4:
    ``n``; ``own_iou`` the median IoU of the hallucinated box with its own box; ``true_iou`` the median IoU of the
    real neighbour with the box; ``hal_offset`` / ``true_offset`` the median horizontal centre offset over the box
    width of the hallucinated / real neighbour; ``same_side`` the fraction on the real neighbour's side.
    """
    own, true, ho, to = [], [], [], []
    for b, h, g in zip(boxes, overlap_boxes, gt_boxes, strict=True):
        if b.shape[0] == 0 or g.shape[0] < 2:
            continue
        v, ix = box_iou(b, g).topk(2, dim=1)
        ok = (v[:, 0] >= 0.5) & (v[:, 1] > 0.4)
        if not bool(ok.any()):
            continue
        b, h, nb = b[ok], h[ok], g[ix[ok, 1]]
        w = (b[:, 2] - b[:, 0]).clamp(min=1e-6)
        cx = (b[:, 0] + b[:, 2]) / 2
        own.append(box_iou(b, h).diagonal())
        true.append(v[ok, 1])
        ho.append(((h[:, 0] + h[:, 2]) / 2 - cx) / w)
        to.append(((nb[:, 0] + nb[:, 2]) / 2 - cx) / w)
    if not own:
        return {"n": 0}
    own, true, ho, to = (torch.cat(x) for x in (own, true, ho, to))
    return {"n": int(own.numel()), "own_iou": float(own.median()), "true_iou": float(true.median()),
            "hal_offset": float(ho.abs().median()), "true_offset": float(to.abs().median()),
            "same_side": float((torch.sign(ho) == torch.sign(to)).float().mean())}
