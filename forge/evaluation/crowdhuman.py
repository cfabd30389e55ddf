"""CrowdHuman evaluation: AP, recall, MR^-2 and JI, vectorised with numpy.

The defaults reproduce CrowdDet's ``lib/evaluate/compute_APMR.py`` and ``compute_JI.py`` (Purkialo/CrowdDet,
commit fa0b55b) number for number; ``tests/fixtures/crowdhuman`` holds golden values produced by those scripts.
All values are fractions in ``[0, 1]``.

Images and boxes
----------------
* The image set is the ground truth (file order). An image without a detection record has no detections
  (``missing_dt='empty'``; CrowdDet crashes there, ``missing_dt='error'`` refuses). A detection record whose ``ID``
  is not in the ground truth is an error.
* ``box_type`` picks the GT boxes: ``fbox`` (full body), ``vbox`` (visible) or ``hbox`` (head). Detections are
  always the records' ``box``. A GT box is *ignored* when ``tag != "person"`` or ``extra.ignore != 0`` (for ``hbox``
  also when ``head_attr.ignore != 0``, CrowdDet's head mode). CrowdDet only reads ``fbox`` for GT in
  ``compute_APMR``; ``vbox``/``hbox`` apply the same rules to the other boxes.
* Box prep: ``x2 = x + w``, ``y2 = y + h`` (no ``+1``), then detections **and** GT are clipped to the image:
  ``x1 in [0, W-1]``, ``y1 in [0, H-1]``, ``x2 in [0, W]``, ``y2 in [0, H]``. ``W``/``H`` come from the GT record
  when it carries them, else from the detection record (``clip=False`` skips clipping and the size requirement;
  an image without detections and of unknown size is left unclipped, where CrowdDet would fail).
* Overlaps (``eps = 1e-6``, areas not clamped unless said):
  ``IoU = inter / (area_d + area_g - inter + eps)``; AP/MR ignore test ``IoA = inter / (area_d + eps)``;
  JI ignore test ``IoA = inter / (max(w, 0) * max(h, 0) + eps)`` of the box being tested.

AP, recall and MR^-2 (``compute_APMR``)
---------------------------------------
* Caltech matching per image at ``iou_thr`` (0.5): detections by descending score (stable), GT with the non-ignored
  boxes first (file order). Each detection takes the still-unmatched non-ignored GT of largest IoU if that IoU is
  ``> iou_thr`` (ties: first GT) -> true positive. Otherwise, if its IoA with any ignored GT is ``> iou_thr``, it is
  discarded (ignore regions absorb any number of detections); otherwise it is a false positive.
* All kept detections of all images are pooled and sorted by descending score; ties keep image order (GT file
  order) and then file order within the image (a stable sort).
* ``recall_i = TP_i / #non-ignored GT``, ``precision_i = TP_i / (TP_i + FP_i + precision_eps)`` (``precision_eps``
  0; 1e-3 in the NOH-NMS evaluator). **AP** is the trapezoid rule over consecutive points,
  ``sum_i (r_i - r_{i-1}) * (p_{i-1} + p_i) / 2`` for ``i >= 1``: no point at recall 0, no precision envelope.
  **recall** is the final recall (all detections).
* **MR^-2**: ``FPPI_i = FP_i / #images``, ``miss_i = 1 - recall_i``; at each reference FPPI
  ``10^[-2, -1.75, ..., 0]`` (written 0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000) the miss
  rate is sampled and the nine samples are log-averaged, ``exp(mean(log(miss)))`` (a zero miss rate gives 0).
  ``mr_sampling='crowddet'`` (default): first index with ``FPPI >= ref``, else the last index.
  ``mr_sampling='noh'`` (NOH-NMS evaluator): last index with ``FPPI <= ref``; when there is none, the *last* point
  (NOH's Python ``[-1]`` wrap-around); NOH also makes recall monotone first, a no-op for cumulative recall.

JI (``compute_JI``)
-------------------
* For each score threshold ``t`` in ``0.1 * i, i = 0..9`` (computed as CrowdDet does, so ``t = 0.30000000000000004``)
  keep detections with ``score > t``.
* Per image: maximum-weight bipartite matching between kept detections and non-ignored GT over the edges with
  ``IoU > iou_thr`` (weight = IoU, not max cardinality) -> ``k`` pairs. Unmatched detections whose JI-IoA with an
  ignored GT is ``> iou_thr`` are removed from ``n`` (#kept detections), unmatched non-ignored GT whose JI-IoA with an
  ignored GT is ``> iou_thr`` are removed from ``m`` (#non-ignored GT).
  ``JI_img = k / (m + n - k + 1e-6)`` (the ``eps`` is CrowdDet's: perfect detections give ``1 - O(1e-7)``).
* ``JI_t`` = sum of ``JI_img`` over all images / number of images with ``m != 0 or n != 0`` (NaN if none).
  **JI** = max over thresholds (NaN thresholds skipped); ``JI_score_thr`` is the arg max.
* Matching solver, ``matching=``:

  - ``'blossom'`` (default, CrowdDet's): the matching CrowdDet's Edmonds blossom code returns, ties included. An
    optimum that is unique is found by any exact solver, so each connected component of the IoU graph is solved
    directly (a single edge, or a star whose edges share one detection or one GT: its heaviest edge) or with
    ``scipy.optimize.linear_sum_assignment`` (cached across thresholds), and checked for uniqueness (another optimum
    must miss one chosen edge, so: does dropping any chosen edge keep the optimum weight, within 1e-9?). Images
    with a non-unique optimum are re-solved with networkx's ``max_weight_matching`` (a port of the same blossom
    code) on CrowdDet's exact graph: vertices numbered as CrowdDet numbers them (kept detections ``1..N`` in file
    order, GT ``N+1..``), edges inserted in its row-major order, which reproduces its tie-breaking (verified on
    thousands of tie-heavy random graphs and by ``tests/fixtures/crowdhuman/ties``).
  - ``'hungarian'``: the same optimum without the uniqueness check; ties are broken by
    ``linear_sum_assignment`` (first heaviest edge for stars), so the JI can differ from CrowdDet's on exact ties
    (e.g. a detection exactly between two GT with an ignore region on one side).

Degenerate cases (CrowdDet raises or returns NaN): no non-ignored GT -> AP/recall/MR-2 NaN; no kept detection ->
AP 0, recall 0, MR-2 1. Known CrowdDet quirk not reproduced: a GT ``tag == "background"`` is matched as an ignore
region but counted as a positive by CrowdDet; here every non-``person`` tag is ignored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from forge.data.crowdhuman_reader import BOX_TYPES, DTRecord, GTRecord, read_detections, read_gt_odgt

__all__ = [
    "MR_REFS",
    "JI_SCORE_THRS",
    "evaluate",
    "evaluate_files",
    "format_table",
    "CrowdHumanMetric",
]

# Caltech reference FPPI points for MR^-2 (as written in CrowdDet / P. Dollar's toolbox).
MR_REFS = (0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000)
# JI score thresholds, computed as CrowdDet does (1e-1 * i).
JI_SCORE_THRS = tuple(1e-1 * i for i in range(10))
_EPS = 1e-6
_CHUNK_ELEMS = 1 << 20  # padded (images x dets x gts) elements per chunk; bounds memory to a few tens of MB


# ----------------------------------------------------------------------------------------------------------------
# preparation


def _resolve_size(gt: GTRecord, dt: DTRecord | None) -> tuple[float | None, float | None]:
    w = gt.width if gt.width is not None else (None if dt is None else dt.width)
    h = gt.height if gt.height is not None else (None if dt is None else dt.height)
    return w, h


def _clip(boxes: np.ndarray, w: np.ndarray, h: np.ndarray) -> None:
    """In place, CrowdDet's clip: x1 to [0, W-1], y1 to [0, H-1], x2 to [0, W], y2 to [0, H]."""
    boxes[:, 0] = np.minimum(np.maximum(boxes[:, 0], 0), w - 1)
    boxes[:, 1] = np.minimum(np.maximum(boxes[:, 1], 0), h - 1)
    boxes[:, 2] = np.maximum(np.minimum(boxes[:, 2], w), 0)
    boxes[:, 3] = np.maximum(np.minimum(boxes[:, 3], h), 0)


class _Prepared:
    """Flat, image-contiguous arrays (dets sorted by score within each image; non-ignored and ignored GT apart)."""

    def __init__(self, gt_records, dt_records, box_type, clip, missing_dt):
        if box_type not in BOX_TYPES:
            raise ValueError(f"box_type must be one of {BOX_TYPES}, got {box_type!r}")
        if missing_dt not in ("empty", "error"):
            raise ValueError(f"missing_dt must be 'empty' or 'error', got {missing_dt!r}")
        gt_records = list(gt_records)
        index: dict[str, int] = {}
        for i, g in enumerate(gt_records):
            if g.ID in index:
                raise ValueError(f"duplicate ground-truth ID {g.ID!r} ({g.source}:{g.line})")
            index[g.ID] = i
        n = len(gt_records)
        dts: list[DTRecord | None] = [None] * n
        for d in dt_records:
            i = index.get(d.ID)
            if i is None:
                raise ValueError(f"detections for ID {d.ID!r} ({d.source}:{d.line}) not in the ground truth")
            if dts[i] is not None:
                raise ValueError(f"duplicate detection record for ID {d.ID!r} ({d.source}:{d.line})")
            dts[i] = d
        if missing_dt == "error":
            missing = [gt_records[i].ID for i in range(n) if dts[i] is None]
            if missing:
                raise ValueError(f"{len(missing)} images have no detection record, e.g. {missing[:3]}")

        gt_boxes, gt_ign, dt_boxes, dt_scores = [], [], [], []
        n_dt = np.zeros(n, dtype=np.int64)
        n_gt = np.zeros(n, dtype=np.int64)
        width = np.full(n, np.nan)
        height = np.full(n, np.nan)
        for i, g in enumerate(gt_records):
            b = g.boxes(box_type)
            if b.size and np.isnan(b).any():
                j = int(np.isnan(b).any(axis=1).argmax())
                raise ValueError(f"{g.source}:{g.line}: ID {g.ID!r} gtboxes[{j}] has no {box_type!r}")
            gt_boxes.append(b)
            gt_ign.append(g.ignore_flags(box_type))
            n_gt[i] = b.shape[0]
            d = dts[i]
            if d is not None:
                if d.boxes.reshape(-1, 4).shape[0] != d.scores.shape[0]:
                    raise ValueError(
                        f"ID {d.ID!r} ({d.source}:{d.line}): {d.boxes.shape} boxes for {d.scores.shape} scores"
                    )
                dt_boxes.append(d.boxes)
                dt_scores.append(d.scores)
                n_dt[i] = d.scores.shape[0]
            w, h = _resolve_size(g, d)
            if clip and (w is None or h is None) and n_dt[i] > 0:
                raise ValueError(
                    f"ID {g.ID!r} ({g.source}:{g.line}): image width/height unknown (neither the ground truth nor "
                    "the detections carry 'width'/'height'); needed to clip boxes (or pass clip=False)"
                )
            width[i] = np.nan if w is None else w
            height[i] = np.nan if h is None else h

        self.n_images = n
        self.ids = [g.ID for g in gt_records]
        gtb = _xyxy(gt_boxes)
        dtb = _xyxy(dt_boxes)
        ign = np.concatenate(gt_ign) if gt_ign else np.zeros(0, dtype=bool)
        score = np.concatenate(dt_scores) if dt_scores else np.zeros(0)
        gt_img = np.repeat(np.arange(n), n_gt)
        dt_img = np.repeat(np.arange(n), n_dt)
        if clip:  # images of unknown size have no detections (checked above): nothing to clip against
            sized = np.isfinite(width) & np.isfinite(height)
            for b, im in ((gtb, gt_img), (dtb, dt_img)):
                rows = sized[im]
                sub = b[rows]
                _clip(sub, width[im[rows]], height[im[rows]])
                b[rows] = sub

        # dets: image-contiguous, descending score within the image, stable (file order among equal scores)
        order = np.lexsort((np.arange(score.shape[0]), -score, dt_img))
        self.dt_boxes = dtb[order]
        self.dt_score = score[order]
        self.dt_img = dt_img[order]
        self.n_dt = n_dt
        self.dt_file_rank = order - _starts(n_dt)[self.dt_img]  # position in the image's detection list
        # GT: non-ignored boxes and ignore regions, each image-contiguous in file order
        self.gtn_boxes = gtb[~ign]
        self.gtn_img = gt_img[~ign]
        self.gti_boxes = gtb[ign]
        self.gti_img = gt_img[ign]
        self.n_gtn = np.bincount(self.gtn_img, minlength=n).astype(np.int64)
        self.n_gti = np.bincount(self.gti_img, minlength=n).astype(np.int64)


def _xyxy(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros((0, 4))
    out = np.concatenate([p.reshape(-1, 4) for p in parts]).astype(np.float64, copy=True)
    out[:, 2:4] += out[:, 0:2]
    return out


def _starts(counts: np.ndarray) -> np.ndarray:
    s = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=s[1:])
    return s


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + counts[i])``."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return offs + np.arange(total)


def _pad(boxes: np.ndarray, img: np.ndarray, starts: np.ndarray, local: np.ndarray, imgs: np.ndarray, k: int):
    """Scatter the boxes of images ``imgs`` into ``(len(imgs), k, 4)``.

    Returns ``(padded, valid (C, k), rows, chunk_index, rank)``: ``rows`` index the flat arrays and land at
    ``padded[chunk_index, rank]``.
    """
    c = imgs.shape[0]
    out = np.zeros((c, k, 4))
    valid = np.zeros((c, k), dtype=bool)
    rows = _ranges(starts[imgs], starts[imgs + 1] - starts[imgs])
    li = local[img[rows]]
    rank = rows - starts[img[rows]]
    out[li, rank] = boxes[rows]
    valid[li, rank] = True
    return out, valid, rows, li, rank


def _overlaps(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Intersection areas ``(C, D, G)`` of ``d (C, D, 4)`` and ``g (C, G, 4)`` xyxy (CrowdDet's arithmetic)."""
    dx1, dy1, dx2, dy2 = (d[:, :, None, i] for i in range(4))
    gx1, gy1, gx2, gy2 = (g[:, None, :, i] for i in range(4))
    iw = np.minimum(dx2, gx2) - np.maximum(dx1, gx1)
    ih = np.minimum(dy2, gy2) - np.maximum(dy1, gy1)
    inter = np.maximum(0, iw) * np.maximum(0, ih)
    return inter


def _area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _area_clamped(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def _chunks(p: _Prepared) -> Iterable[np.ndarray]:
    """Groups of images of similar size so that padding stays small and memory bounded."""
    cost_g = np.maximum(p.n_gtn, p.n_gti) + 1
    order = np.lexsort((p.n_dt, cost_g))
    start = 0
    n = order.shape[0]
    while start < n:
        end = start + 1
        dmax = max(int(p.n_dt[order[start]]), 1)
        gmax = int(cost_g[order[start]])
        while end < n:
            d2 = max(dmax, int(p.n_dt[order[end]]))
            g2 = max(gmax, int(cost_g[order[end]]))
            if (end - start + 1) * d2 * g2 > _CHUNK_ELEMS:
                break
            dmax, gmax = d2, g2
            end += 1
        yield order[start:end]
        start = end


# ----------------------------------------------------------------------------------------------------------------
# per-image matching (vectorised over the images of a chunk)


class _Matched:
    def __init__(self, p: _Prepared, iou_thr: float):
        nd, ng = p.dt_score.shape[0], p.gtn_img.shape[0]
        self.tp = np.zeros(nd, dtype=bool)  # Caltech true positive
        self.dt_in_ign_apmr = np.zeros(nd, dtype=bool)  # IoA (unclamped area) with an ignore region > thr
        self.dt_in_ign_ji = np.zeros(nd, dtype=bool)  # IoA (clamped area) with an ignore region > thr
        self.gt_in_ign_ji = np.zeros(ng, dtype=bool)
        e_dt, e_gt, e_w = [], [], []
        dstart, gstart, istart = _starts(p.n_dt), _starts(p.n_gtn), _starts(p.n_gti)
        local = np.zeros(p.n_images, dtype=np.int64)
        for imgs in _chunks(p):
            c = imgs.shape[0]
            local[imgs] = np.arange(c)
            D = int(p.n_dt[imgs].max())
            G = int(p.n_gtn[imgs].max())
            K = int(p.n_gti[imgs].max())
            if D == 0:
                if G and K:
                    self._gt_ignores(p, imgs, local, gstart, istart, G, K, iou_thr)
                continue
            d, dv, drows, dli, drank = _pad(p.dt_boxes, p.dt_img, dstart, local, imgs, D)
            if G:
                g, gv, grows, _, _ = _pad(p.gtn_boxes, p.gtn_img, gstart, local, imgs, G)
                inter = _overlaps(d, g)
                iou = inter / (_area(d)[:, :, None] + _area(g)[:, None, :] - inter + _EPS)
                iou[~(dv[:, :, None] & gv[:, None, :])] = -1.0
                # Caltech greedy: detections in score order take the best still-free GT with IoU > thr
                free = gv.copy()
                tp = np.zeros((c, D), dtype=bool)
                ar = np.arange(c)
                for r in range(D):
                    cur = np.where(free, iou[:, r, :], -1.0)
                    j = cur.argmax(axis=1)
                    hit = cur[ar, j] > iou_thr
                    if hit.any():
                        tp[hit, r] = True
                        free[ar[hit], j[hit]] = False
                self.tp[drows] = tp[dli, drank]
                # JI edges
                ci, ri, gi = np.nonzero(iou > iou_thr)
                if ci.size:
                    img = imgs[ci]
                    e_dt.append(dstart[img] + ri)
                    e_gt.append(gstart[img] + gi)
                    e_w.append(iou[ci, ri, gi])
            if K:
                ig, iv, _, _, _ = _pad(p.gti_boxes, p.gti_img, istart, local, imgs, K)
                inter = _overlaps(d, ig)
                mask = dv[:, :, None] & iv[:, None, :]
                ioa_a = inter / (_area(d)[:, :, None] + _EPS)
                ioa_j = inter / (_area_clamped(d)[:, :, None] + _EPS)
                self.dt_in_ign_apmr[drows] = ((ioa_a > iou_thr) & mask).any(axis=2)[dli, drank]
                self.dt_in_ign_ji[drows] = ((ioa_j > iou_thr) & mask).any(axis=2)[dli, drank]
                if G:
                    self._gt_ignores(p, imgs, local, gstart, istart, G, K, iou_thr)
        if e_dt:
            self.e_dt = np.concatenate(e_dt)
            self.e_gt = np.concatenate(e_gt)
            self.e_w = np.concatenate(e_w)
        else:
            self.e_dt = np.zeros(0, dtype=np.int64)
            self.e_gt = np.zeros(0, dtype=np.int64)
            self.e_w = np.zeros(0)
        # edges ordered by detection (score order within image), then GT
        o = np.lexsort((self.e_gt, self.e_dt))
        self.e_dt, self.e_gt, self.e_w = self.e_dt[o], self.e_gt[o], self.e_w[o]

    def _gt_ignores(self, p, imgs, local, gstart, istart, G, K, iou_thr):
        g, gv, grows, gli, grank = _pad(p.gtn_boxes, p.gtn_img, gstart, local, imgs, G)
        ig, iv, _, _, _ = _pad(p.gti_boxes, p.gti_img, istart, local, imgs, K)
        inter = _overlaps(g, ig)
        ioa = inter / (_area_clamped(g)[:, :, None] + _EPS)
        hit = ((ioa > iou_thr) & gv[:, :, None] & iv[:, None, :]).any(axis=2)
        self.gt_in_ign_ji[grows] = hit[gli, grank]


# ----------------------------------------------------------------------------------------------------------------
# AP / recall / MR


def _ap_mr(p: _Prepared, m: _Matched, precision_eps: float, mr_sampling: str) -> dict:
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


# ----------------------------------------------------------------------------------------------------------------
# JI


_TIE_TOL = 1e-9  # optimum weights closer than this count as a tie (the image is then re-solved CrowdDet's way)


def _solve_small(w: np.ndarray, ldi: np.ndarray, lgi: np.ndarray, a: int, b: int, check_tie: bool):
    """Max-weight matching of one component with ``a`` detections and ``b`` GT (local indices ``ldi``/``lgi``).

    Returns ``(chosen edge positions, tie)``; ``tie`` (only computed when ``check_tie``) tells whether another
    matching has the same total weight: another optimum must miss some chosen edge (weights are > 0, so it cannot
    be a strict superset), hence the optimum is unique iff dropping any single chosen edge lowers it.
    """
    from scipy.optimize import linear_sum_assignment

    mat = np.zeros((a, b))
    mat[ldi, lgi] = w
    eid = np.full((a, b), -1, dtype=np.int64)
    eid[ldi, lgi] = np.arange(w.shape[0])
    r, c = linear_sum_assignment(mat, maximize=True)
    sel = eid[r, c]
    sel = sel[sel >= 0]
    tie = False
    if check_tie:
        best = float(mat[r, c].sum())
        for e in sel.tolist():
            m2 = mat.copy()
            m2[ldi[e], lgi[e]] = 0.0
            r2, c2 = linear_sum_assignment(m2, maximize=True)
            if float(m2[r2, c2].sum()) >= best - _TIE_TOL:
                tie = True
                break
    return sel, tie


def _compact(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True)`` for non-negative ints in O(max(x)) instead of a sort."""
    mark = np.zeros(int(x.max()) + 1, dtype=bool)
    mark[x] = True
    u = np.flatnonzero(mark)
    inv = np.zeros(mark.size, dtype=np.int64)
    inv[u] = np.arange(u.size)
    return u, inv[x]


def _max_weight_matching(
    e_dt: np.ndarray, e_gt: np.ndarray, e_w: np.ndarray, eid: np.ndarray, eid_total: int, check_tie: bool, cache: dict
):
    """A maximum-weight bipartite matching (detections ``e_dt``, GT ``e_gt``, weights ``e_w`` > 0).

    ``eid`` are ascending ids of the edges in the full (lowest-threshold) graph of ``eid_total`` edges.

    Components that are a single edge or a star take their heaviest edge (first on ties); the others are solved
    one by one with ``scipy.optimize.linear_sum_assignment`` (cached by edge set across score thresholds).

    Returns:
        ``(chosen, tied)``: bool masks over the edges; ``tied`` marks the edges of components whose optimum is not
        unique (only when ``check_tie``).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ne = e_dt.shape[0]
    chosen = np.zeros(ne, dtype=bool)
    tied = np.zeros(ne, dtype=bool)
    if ne == 0:
        return chosen, tied
    ud, di = _compact(e_dt)
    ug, gi = _compact(e_gt)
    nn = ud.size + ug.size
    adj = coo_matrix((np.ones(ne), (di, ud.size + gi)), shape=(nn, nn))
    n_comp, lab = connected_components(adj, directed=False)
    comp = lab[di]
    lab_d, lab_g = lab[: ud.size], lab[ud.size :]
    n_d = np.bincount(lab_d, minlength=n_comp)
    n_g = np.bincount(lab_g, minlength=n_comp)
    simple = (n_d == 1) | (n_g == 1)  # a single edge or a star: the heaviest edge is the optimum
    o = np.lexsort((np.arange(ne), -e_w, comp))  # per component: heaviest first, then edge order
    first = np.ones(ne, dtype=bool)
    first[1:] = comp[o][1:] != comp[o][:-1]
    best = o[first]  # one edge per component, components ascending
    chosen[best[simple]] = True
    if check_tie:
        near = e_w >= e_w[best][comp] - _TIE_TOL
        tie_c = simple & (np.bincount(comp, weights=near, minlength=n_comp) > 1)
        tied |= tie_c[comp]
    hard = np.flatnonzero(~simple)
    if hard.size:
        # local (within-component) indices of the nodes: rank in (component, node id) order
        od = np.lexsort((ud, lab_d))
        rank_d = np.empty(ud.size, dtype=np.int64)
        rank_d[od] = np.arange(ud.size) - _starts(n_d)[lab_d[od]]
        og = np.lexsort((ug, lab_g))
        rank_g = np.empty(ug.size, dtype=np.int64)
        rank_g[og] = np.arange(ug.size) - _starts(n_g)[lab_g[og]]
        ldi, lgi = rank_d[di], rank_g[gi]
        oc = np.argsort(comp, kind="stable")  # edges of a component stay in (detection, GT) order
        bounds = _starts(np.bincount(comp, minlength=n_comp))
        # Graphs of different score thresholds are nested, so a component is identified by its first edge and
        # its number of edges: the cache key.
        keys = (eid[oc[bounds[hard]]] * (eid_total + 1) + (bounds[hard + 1] - bounds[hard])).tolist()
        for c, key in zip(hard.tolist(), keys):
            hit = cache.get(key)
            if hit is None or (check_tie and hit[1] is None):
                eidx = oc[bounds[c] : bounds[c + 1]]
                sel, tie = _solve_small(e_w[eidx], ldi[eidx], lgi[eidx], int(n_d[c]), int(n_g[c]), check_tie)
                cache[key] = (eid[eidx[sel]], tie if check_tie else None)
        sols = [cache[k] for k in keys]
        chosen[np.searchsorted(eid, np.concatenate([s[0] for s in sols]))] = True
        if check_tie:
            for c, sol in zip(hard.tolist(), sols):
                if sol[1]:
                    tied[oc[bounds[c] : bounds[c + 1]]] = True
    return chosen, tied


def _blossom_image(dt_rank: np.ndarray, gt_rank: np.ndarray, w: np.ndarray, n_kept: int) -> np.ndarray:
    """CrowdDet's matching of one image, replayed with networkx's Edmonds blossom implementation.

    Vertices are numbered as CrowdDet numbers them (kept detections ``1..N`` in file order, non-ignored GT
    ``N+1..`` in file order, vertex 0 unused, up to the largest endpoint) and the edges are inserted in its
    row-major order, which makes the tie-breaking identical to CrowdDet's ``maxWeightMatching`` (checked on
    thousands of tie-heavy random graphs). ``dt_rank`` is the 0-based rank among the image's ``n_kept`` kept
    detections in file order, ``gt_rank`` among its non-ignored GT. Returns a bool mask over the given edges.
    """
    import networkx as nx

    u = dt_rank + 1
    v = gt_rank + n_kept + 1
    order = np.lexsort((v, u))
    graph = nx.Graph()
    graph.add_nodes_from(range(int(max(u.max(), v.max())) + 1))
    graph.add_weighted_edges_from(zip(u[order].tolist(), v[order].tolist(), w[order].tolist()))
    pairs = {(min(a, b), max(a, b)) for a, b in nx.max_weight_matching(graph, maxcardinality=False)}
    return np.array([(a, b) in pairs for a, b in zip(u.tolist(), v.tolist())], dtype=bool)


def _ji(p: _Prepared, m: _Matched, score_thrs: Sequence[float], matching: str) -> dict:
    n = p.n_images
    nd, ng = p.dt_score.shape[0], p.gtn_img.shape[0]
    if matching not in ("blossom", "hungarian"):
        raise ValueError(f"matching must be 'blossom' or 'hungarian', got {matching!r}")
    blossom = matching == "blossom"
    dstart, gstart = _starts(p.n_dt), _starts(p.n_gtn)
    cache: dict = {}
    per_thr = []
    for t in score_thrs:
        kept = p.dt_score > t
        emask = kept[m.e_dt]
        e_dt, e_gt, e_w = m.e_dt[emask], m.e_gt[emask], m.e_w[emask]
        eid = np.flatnonzero(emask)
        sel, tied = _max_weight_matching(e_dt, e_gt, e_w, eid, m.e_dt.shape[0], blossom, cache)
        if tied.any():  # a non-unique optimum: replay CrowdDet's blossom on the whole image
            e_img = p.dt_img[e_dt]
            for i in np.unique(e_img[tied]).tolist():
                em = e_img == i
                lo, hi = dstart[i], dstart[i + 1]
                kept_rank = np.sort(p.dt_file_rank[lo:hi][kept[lo:hi]])
                dt_rank = np.searchsorted(kept_rank, p.dt_file_rank[e_dt[em]])
                sel[em] = _blossom_image(dt_rank, e_gt[em] - gstart[i], e_w[em], kept_rank.size)
        md = np.zeros(nd, dtype=bool)
        mg = np.zeros(ng, dtype=bool)
        md[e_dt[sel]] = True
        mg[e_gt[sel]] = True
        k = np.bincount(p.dt_img[e_dt[sel]], minlength=n)
        n_kept = np.bincount(p.dt_img[kept], minlength=n)
        ign_dt = np.bincount(p.dt_img[kept & ~md & m.dt_in_ign_ji], minlength=n)
        ign_gt = np.bincount(p.gtn_img[~mg & m.gt_in_ign_ji], minlength=n)
        mm = p.n_gtn - ign_gt
        nn = n_kept - ign_dt
        ratio = k / (mm + nn - k + _EPS)
        valid = int(((mm != 0) | (nn != 0)).sum())
        per_thr.append(float(ratio.sum() / valid) if valid else math.nan)
    out: dict[str, Any] = {f"JI@{t:.1f}": v for t, v in zip(score_thrs, per_thr)}
    finite = [(v, t) for v, t in zip(per_thr, score_thrs) if not math.isnan(v)]
    if finite:
        best = max(range(len(finite)), key=lambda i: finite[i][0])  # first maximum
        out["JI"], out["JI_score_thr"] = finite[best][0], float(finite[best][1])
    else:
        out["JI"], out["JI_score_thr"] = math.nan, math.nan
    return out


# ----------------------------------------------------------------------------------------------------------------
# public API


def evaluate(
    gt_records: Sequence[GTRecord],
    dt_records: Iterable[DTRecord],
    box_type: str = "fbox",
    *,
    iou_thr: float = 0.5,
    clip: bool = True,
    matching: str = "blossom",
    mr_sampling: str = "crowddet",
    precision_eps: float = 0.0,
    ji_score_thrs: Sequence[float] = JI_SCORE_THRS,
    missing_dt: str = "empty",
) -> dict:
    """AP, recall, MR^-2 and JI of detections against CrowdHuman ground truth (rules in the module docstring).

    Args:
        gt_records: from :func:`forge.data.crowdhuman_reader.read_gt_odgt`; their order is the image order.
        dt_records: from :func:`~forge.data.crowdhuman_reader.read_detections` (boxes xywh, scores).
        box_type: GT boxes to evaluate against: ``fbox`` (default), ``vbox`` or ``hbox``.
        iou_thr: IoU / IoA threshold of every match and ignore test (0.5).
        clip: clip detections and GT to the image (needs ``width``/``height`` in the GT or detection records).
        matching: JI matching solver, ``'blossom'`` (default, CrowdDet) or ``'hungarian'``.
        mr_sampling: ``'crowddet'`` (default) or ``'noh'`` (NOH-NMS evaluator).
        precision_eps: added to the AP precision denominator (0; NOH-NMS uses 1e-3).
        ji_score_thrs: JI score thresholds (CrowdDet: ``0.1 * i``, ``i = 0..9``; a detection is kept if ``> t``).
        missing_dt: ``'empty'`` (an image without a detection record has no detections) or ``'error'``.

    Returns:
        flat dict: ``AP``, ``MR-2``, ``JI``, ``recall``, ``JI_score_thr``, ``JI@0.0`` .. ``JI@0.9``, and counts
        ``num_images``, ``num_gt`` (non-ignored), ``num_ignore``, ``num_dt``, ``num_tp``, ``num_fp``,
        ``num_dt_ignored``.
    """
    if matching not in ("blossom", "hungarian"):
        raise ValueError(f"matching must be 'blossom' or 'hungarian', got {matching!r}")
    if mr_sampling not in ("crowddet", "noh"):
        raise ValueError(f"mr_sampling must be 'crowddet' or 'noh', got {mr_sampling!r}")
    p = _Prepared(gt_records, dt_records, box_type, clip, missing_dt)
    m = _Matched(p, float(iou_thr))
    out: dict[str, Any] = {"box_type": box_type}
    res = _ap_mr(p, m, float(precision_eps), mr_sampling)
    out.update(AP=res.pop("AP"), **{"MR-2": res.pop("MR-2")}, recall=res.pop("recall"))
    ji = _ji(p, m, [float(t) for t in ji_score_thrs], matching)
    out["JI"] = ji.pop("JI")
    out["JI_score_thr"] = ji.pop("JI_score_thr")
    out.update(ji)
    out.update(
        num_images=p.n_images,
        num_gt=int(p.n_gtn.sum()),
        num_ignore=int(p.n_gti.sum()),
        num_dt=int(p.dt_score.shape[0]),
        **res,
    )
    return out


def evaluate_files(
    gt_path: str | os.PathLike,
    dt_path: str | os.PathLike,
    box_type: str = "fbox",
    *,
    id_map: Mapping | str | os.PathLike | None = None,
    category_ids: Iterable[int] | None = None,
    **options: Any,
) -> dict:
    """:func:`evaluate` on files: a GT ``.odgt`` and detections as odgt or COCO-style result json.

    Args:
        gt_path: ground-truth ``.odgt``.
        dt_path: detections (see :func:`forge.data.crowdhuman_reader.read_detections`).
        box_type: ``fbox`` / ``vbox`` / ``hbox``.
        id_map: COCO ``image_id -> ID`` mapping (dict or json file) for COCO-style results.
        category_ids: COCO-style results only: keep these ``category_id`` values.
        **options: forwarded to :func:`evaluate`.
    """
    gts = read_gt_odgt(gt_path)
    dts = read_detections(dt_path, id_map=id_map, category_ids=None if category_ids is None else set(category_ids))
    return evaluate(gts, dts, box_type=box_type, **options)


def format_table(results: Mapping[str, Any]) -> str:
    """Plain-text table of the main numbers (AP / recall / MR-2 / JI in %) plus JI per score threshold."""

    def pct(v):
        return "   nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"

    box = results.get("box_type", "")
    lines = [
        f"CrowdHuman {box}".rstrip(),
        "| AP (%) | recall (%) | MR^-2 (%) | JI (%) |",
        "|-------:|-----------:|----------:|-------:|",
        f"| {pct(results.get('AP'))} | {pct(results.get('recall')):>10} | {pct(results.get('MR-2')):>9} "
        f"| {pct(results.get('JI'))} |",
    ]
    thr = [(k, v) for k, v in results.items() if k.startswith("JI@")]
    if thr:
        lines.append("")
        lines.append("| score > | " + " | ".join(k[3:] for k, _ in thr) + " |")
        lines.append("|--------:|" + "|".join("-----:" for _ in thr) + "|")
        lines.append("| JI (%)  | " + " | ".join(pct(v).strip() for _, v in thr) + " |")
    counts = [k for k in ("num_images", "num_gt", "num_ignore", "num_dt") if k in results]
    if counts:
        lines.append("")
        lines.append(", ".join(f"{k[4:]}: {results[k]}" for k in counts))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# mmengine metric


def _sample_id(meta: Any) -> str:
    extra = getattr(meta, "extra", None) or {}
    if "ID" in extra:
        return str(extra["ID"])
    name = getattr(meta, "file_name", "")
    if name:
        return os.path.splitext(os.path.basename(name))[0]
    raise ValueError("CrowdHumanMetric: a sample's meta has neither extra['ID'] nor a file_name")


class CrowdHumanMetric(BaseMetric):
    """CrowdHuman AP / MR^-2 / JI / recall as an mmengine metric.

    ``process`` takes a list of :class:`forge.data.structures.DetSample` whose ``pred`` is a ``Detections`` in
    original-image coordinates (xyxy) and whose ``meta.extra['ID']`` is the CrowdHuman ``ID`` (falling back to the
    file name without extension). One result entry is stored per image (ID, xywh float64 boxes, scores, the
    ``ori_shape`` size), so mmengine's distributed gather and truncation to the dataset size work as usual.
    ``compute_metrics`` reads the GT from ``ann_file`` (cached) and runs :func:`evaluate`.

    Args:
        ann_file: ground-truth ``.odgt``.
        box_type: ``fbox`` / ``vbox`` / ``hbox``.
        label: keep only predictions of this class index (None keeps all; CrowdHuman person models have one).
        only_processed: evaluate only the GT images that were processed (else unprocessed images count as images
            without detections).
        log_table: print :func:`format_table` through the mmengine logger.
        **options: forwarded to :func:`evaluate` (``matching``, ``mr_sampling``, ...).

    Keys: ``crowdhuman/AP``, ``crowdhuman/MR-2``, ``crowdhuman/JI``, ``crowdhuman/recall`` (prefix ``crowdhuman``
    unless ``prefix`` is given).
    """

    default_prefix = "crowdhuman"

    def __init__(
        self,
        ann_file: str,
        box_type: str = "fbox",
        label: int | None = None,
        only_processed: bool = True,
        log_table: bool = True,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if box_type not in BOX_TYPES:
            raise ValueError(f"box_type must be one of {BOX_TYPES}, got {box_type!r}")
        self.ann_file = ann_file
        self.box_type = box_type
        self.label = label
        self.only_processed = only_processed
        self.log_table = log_table
        self.options = options
        self._gt: list[GTRecord] | None = None

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            pred = sample.pred
            if pred is None:
                raise ValueError("CrowdHumanMetric: a sample has no prediction (pred is None)")
            boxes = pred.boxes.detach().cpu().double().numpy().reshape(-1, 4)
            scores = pred.scores.detach().cpu().double().numpy().reshape(-1)
            if self.label is not None:
                keep = pred.labels.detach().cpu().numpy().reshape(-1) == self.label
                boxes, scores = boxes[keep], scores[keep]
            xywh = boxes.copy()
            xywh[:, 2:4] -= xywh[:, 0:2]
            h, w = (int(v) for v in sample.meta.ori_shape)
            self.results.append(
                dict(
                    ID=_sample_id(sample.meta),
                    boxes=xywh,
                    scores=scores,
                    width=w if w > 0 else None,
                    height=h if h > 0 else None,
                )
            )

    def compute_metrics(self, results: list) -> dict:
        if self._gt is None:
            self._gt = read_gt_odgt(self.ann_file)
        dts, seen = [], set()
        for r in results:
            if r["ID"] in seen:  # duplicates cannot come from mmengine's gather; keep the first defensively
                continue
            seen.add(r["ID"])
            dts.append(
                DTRecord(
                    ID=r["ID"],
                    boxes=np.asarray(r["boxes"], dtype=np.float64).reshape(-1, 4),
                    scores=np.asarray(r["scores"], dtype=np.float64).reshape(-1),
                    width=r.get("width"),
                    height=r.get("height"),
                    source="<CrowdHumanMetric>",
                )
            )
        gts = [g for g in self._gt if g.ID in seen] if self.only_processed else self._gt
        res = evaluate(gts, dts, box_type=self.box_type, **self.options)
        if self.log_table:
            print_log("\n" + format_table(res), logger="current")
        return {k: float(v) for k, v in res.items() if k in ("AP", "MR-2", "JI", "recall")} | {
            k: float(v) for k, v in res.items() if k.startswith("JI@")
        }
