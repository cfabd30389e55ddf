"""CrowdHuman JI (CrowdDet's ``compute_JI``): maximum-weight matching per score threshold.

Solvers (``matching='blossom'`` reproduces CrowdDet's Edmonds blossom tie-breaking, ``'hungarian'`` does not check
ties) are described in :mod:`forge.evaluation.crowdhuman`. numpy + scipy; networkx only for tied optima.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from forge.evaluation.crowdhuman.matching import Matched
from forge.evaluation.crowdhuman.prepare import EPS, Prepared, offsets
from forge.progress import progress

__all__ = ["JI_SCORE_THRS", "joint_index"]

# JI score thresholds, computed as CrowdDet does (1e-1 * i).
JI_SCORE_THRS = tuple(1e-1 * i for i in range(10))
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
        rank_d[od] = np.arange(ud.size) - offsets(n_d)[lab_d[od]]
        og = np.lexsort((ug, lab_g))
        rank_g = np.empty(ug.size, dtype=np.int64)
        rank_g[og] = np.arange(ug.size) - offsets(n_g)[lab_g[og]]
        ldi, lgi = rank_d[di], rank_g[gi]
        oc = np.argsort(comp, kind="stable")  # edges of a component stay in (detection, GT) order
        bounds = offsets(np.bincount(comp, minlength=n_comp))
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


def joint_index(p: Prepared, m: Matched, score_thrs: Sequence[float], matching: str) -> dict:
    """JI per score threshold and its maximum: ``{'JI@0.0': .., ..., 'JI': max, 'JI_score_thr': arg max}``."""
    n = p.n_images
    nd, ng = p.dt_score.shape[0], p.gtn_img.shape[0]
    if matching not in ("blossom", "hungarian"):
        raise ValueError(f"matching must be 'blossom' or 'hungarian', got {matching!r}")
    blossom = matching == "blossom"
    dstart, gstart = offsets(p.n_dt), offsets(p.n_gtn)
    cache: dict = {}
    per_thr = []
    for t in progress(score_thrs, desc="crowdhuman JI", unit="thr"):
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
        ratio = k / (mm + nn - k + EPS)
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
