"""The pycocotools-exact precision fix: the ``1 - eps`` cells that faster-coco-eval's C++ accumulate rounds to 1.

pycocotools (and lvis-api) compute precision as ``tp / (tp + fp + eps)``: a run of ``L`` true positives before
the first false positive gives ``1.0`` for ``L >= 2`` but ``1 - 2.2e-16`` for ``L == 1``; the C++ engine gives 1.0
for both. :func:`match_pycocotools_precision` finds the cells (IoU threshold, category, area, maxDets) with
``L == 1`` and writes pycocotools' value there, so that every summary number equals pycocotools' bit for bit.

It reads only the engine's documented output (``eval['precision']`` and the pycocotools ``Params``) and the
annotations it was given; where the first detections of a category must be matched again, IoUs come from the
public mask API (``faster_coco_eval.core.mask``, the functions the engine itself calls). An engine whose output
does not have pycocotools' layout raises :class:`EngineMismatchError` instead of giving wrong numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forge.progress import progress

__all__ = ["EngineMismatchError", "ONE_MINUS_EPS", "PairData", "PairMatcher", "match_pycocotools_precision"]

ONE_MINUS_EPS = 1.0 / (1.0 + np.spacing(1))  # pycocotools' precision of "1 TP out of 1"
FORCE_WALK = False  # tests set this to check the re-matching path on every cell


class EngineMismatchError(RuntimeError):
    """The evaluation engine's output does not have the layout the exact-precision fix relies on."""


def _engine_version() -> str:
    try:
        from faster_coco_eval import __version__
    except ImportError:  # pragma: no cover - the engine is a dependency
        return "(not importable)"
    return str(__version__)


def check_precision_layout(precision: Any, params: Any) -> np.ndarray:
    """``precision`` as a ``(T, R, K, A, M)`` float array matching ``params``, else :class:`EngineMismatchError`."""
    try:
        expected = tuple(len(getattr(params, name)) for name in ("iouThrs", "recThrs", "catIds", "areaRng", "maxDets"))
    except (AttributeError, TypeError) as err:
        raise EngineMismatchError(
            f"faster-coco-eval {_engine_version()}: its Params lack pycocotools' iouThrs/recThrs/catIds/areaRng/"
            f"maxDets ({err}); forge.evaluation.coco supports faster-coco-eval >=1.8,<1.9"
        ) from None
    if not isinstance(precision, np.ndarray) or precision.shape != expected or precision.dtype.kind != "f":
        got = getattr(precision, "shape", type(precision).__name__)
        raise EngineMismatchError(
            f"faster-coco-eval {_engine_version()}: eval['precision'] is {got}, expected a float array of shape "
            f"{expected} (T, R, K, A, M) as pycocotools' accumulate; forge.evaluation.coco supports "
            "faster-coco-eval >=1.8,<1.9"
        )
    return precision


class PairData:
    """The arrays of one (image, category) pair that :class:`PairMatcher` needs, shared by its area ranges.

    Args:
        ious: ``(D, G)`` IoUs, detections sorted by decreasing score (stable), gts in file order.
        gts, dts: the annotation dicts in the same orders (``iscrowd``, ``area``, ``id``; ``area``).
    """

    def __init__(self, ious: np.ndarray, gts: list[dict], dts: list[dict]) -> None:
        self.num_g, self.num_d = len(gts), len(dts)
        self.crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
        self.g_area = np.array([g["area"] for g in gts], dtype=np.float64)
        self.g_ids = np.array([g["id"] for g in gts], dtype=np.int64)
        self.d_area = np.array([d["area"] for d in dts], dtype=np.float64)
        self.ious = np.asarray(ious, dtype=np.float64).reshape(self.num_d, self.num_g)


class PairMatcher:
    """COCO greedy matching of one (image, category) pair in one area range, all IoU thresholds at once.

    Detections are matched lazily in score order (:meth:`status` of rank ``r`` matches ranks ``0..r`` only), since
    the precision fix needs just the first few detections of a category.

    Args:
        pair: the pair's IoUs, areas, crowd flags and ids.
        area_rng: ``[lo, hi]`` area bucket; objects outside it are ignored.
        thrs: ``(T,)`` IoU thresholds.
        not_exhaustive: LVIS: unmatched detections of this category are ignored in this image.
    """

    def __init__(self, pair: PairData, area_rng, thrs: np.ndarray, not_exhaustive: bool) -> None:
        num_g = pair.num_g
        g_ign = pair.crowd | (pair.g_area < area_rng[0]) | (pair.g_area > area_rng[1])
        order = np.argsort(g_ign, kind="mergesort")  # regular gts first, as in COCO
        self.crowd, self.g_ign = pair.crowd[order], g_ign[order]
        self.g_ids = pair.g_ids[order]
        self.n_reg = int((~self.g_ign).sum())
        self.num_g = num_g
        self.ious = pair.ious[:, order] if num_g else None
        self.thr = np.minimum(thrs, 1 - 1e-10)[:, None]
        self.taken = np.zeros((len(thrs), num_g), dtype=bool)
        self.rows = np.arange(len(thrs))
        self.d_out = (pair.d_area < area_rng[0]) | (pair.d_area > area_rng[1]) | not_exhaustive
        self.done: list[tuple[np.ndarray, np.ndarray]] = []

    def _next(self) -> tuple[np.ndarray, np.ndarray]:
        d = len(self.done)
        num_t = len(self.rows)
        matched_id = np.zeros(num_t, dtype=np.int64)
        ignored = np.zeros(num_t, dtype=bool)
        if self.num_g:
            iou = self.ious[d][None, :]
            score = np.where((~self.taken | self.crowd[None, :]) & (iou >= self.thr), iou, -np.inf)
            matched = np.zeros(num_t, dtype=bool)
            for lo, hi in ((0, self.n_reg), (self.n_reg, self.num_g)):
                if hi <= lo:
                    continue
                part = score[:, lo:hi]
                todo = ~matched & np.isfinite(part).any(axis=1)
                if not todo.any():
                    continue
                # best IoU; on ties the later gt wins (COCO's loop replaces on >=)
                best = lo + (hi - lo - 1) - np.argmax(part[:, ::-1], axis=1)
                t_idx, m = self.rows[todo], best[todo]
                matched[t_idx] = True
                matched_id[t_idx] = self.g_ids[m]
                ignored[t_idx] = self.g_ign[m]
                self.taken[t_idx, m] = True
        ignored |= (matched_id == 0) & self.d_out[d]
        return (matched_id != 0) & ~ignored, ignored

    def status(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tp, ignored)``, each ``(T,)`` bool, of the detection at ``rank``."""
        while len(self.done) <= rank:
            self.done.append(self._next())
        return self.done[rank]


def match_pycocotools_precision(
    precision: np.ndarray,
    params: Any,
    gt_anns: Sequence[dict],
    dt_anns: Sequence[dict],
    images: Mapping[int, dict],
    iou_type: str,
    lvis: bool = False,
) -> None:
    """Make ``precision`` (the engine's ``eval['precision']``, ``(T, R, K, A, M)``) equal pycocotools', in place.

    A precision of exactly 1.0 comes from a run of ``L`` TPs before any FP. In a cell the 1.0 values sit at the
    recall thresholds ``r <= L / n_gt``, so their count usually tells ``L == 1`` from ``L >= 2``. Where it cannot
    (no threshold between ``1 / n_gt`` and ``2 / n_gt``, i.e. more than 200 ground truths), the first two counted
    (non-ignored) detections of the category are matched again in COCO's global order. Cells with ``L == 1`` get
    ``1 - eps`` instead of 1.0.

    Args:
        precision: the engine's precision array (checked against ``params``).
        params: the engine's pycocotools ``Params`` (``iouThrs, recThrs, areaRng, maxDets, catIds, imgIds``).
        gt_anns, dt_anns: the annotations the engine evaluated (``area``, ``iscrowd``, ``id`` set; detections in
            file order, already limited / filtered as the engine saw them).
        images: image id -> image dict (``height``, ``width``; LVIS: ``not_exhaustive_category_ids``).
        iou_type: ``'bbox'`` or ``'segm'``.
        lvis: LVIS rules (unmatched detections of a not-exhaustive category are ignored).
    """
    prec = check_precision_layout(precision, params)
    ones = prec == 1.0
    need_all = ones.any(axis=1)  # (T, K, A, M)
    if not need_all.any():
        return
    cat_ids, img_ids = list(params.catIds), list(params.imgIds)
    area_rngs = np.asarray(params.areaRng, dtype=np.float64)
    cat_index = {int(c): k for k, c in enumerate(cat_ids)}
    img_index = {int(img): i for i, img in enumerate(img_ids)}

    # -- counting test: number of counted ground truths per (category, area)
    gts = [g for g in gt_anns if g["image_id"] in img_index and g["category_id"] in cat_index]
    g_cat = np.array([cat_index[g["category_id"]] for g in gts], dtype=np.int64)
    g_area = np.array([g["area"] for g in gts], dtype=np.float64)
    g_crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    n_gt = np.zeros((len(cat_ids), len(area_rngs)), dtype=np.int64)
    for a, (lo, hi) in enumerate(area_rngs):
        counted = ~g_crowd & (g_area >= lo) & (g_area <= hi)
        n_gt[:, a] = np.bincount(g_cat[counted], minlength=len(cat_ids))
    rec_thrs = np.asarray(params.recThrs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        n1 = (rec_thrs[:, None, None] <= (1.0 / n_gt)[None]).sum(axis=0)  # (K, A)
        n2 = (rec_thrs[:, None, None] <= (2.0 / n_gt)[None]).sum(axis=0)
    n_ones = ones.sum(axis=1)  # (T, K, A, M)
    single = need_all & (n_ones == n1[None, :, :, None]) & (n2 > n1)[None, :, :, None]
    single |= need_all & (n_gt == 1)[None, :, :, None]  # one ground truth: a 1.0 can only come from L == 1
    unsure = need_all & ~single & (n_ones <= n1[None, :, :, None])
    if FORCE_WALK:
        single, unsure = np.zeros_like(need_all), need_all
    if unsure.any():
        walk = _Walk(params, gts, dt_anns, images, iou_type, lvis, img_index)
        single |= walk.first_tp_only(unsure, cat_ids)
    t_idx, k_idx, a_idx, m_idx = np.nonzero(single)
    for t, k, a, m in zip(t_idx, k_idx, a_idx, m_idx):
        col = prec[t, :, k, a, m]
        col[col == 1.0] = ONE_MINUS_EPS


class _Walk:
    """Re-matching of the first counted detections of a category, in COCO's global order."""

    def __init__(self, params, gts, dt_anns, images, iou_type: str, lvis: bool, img_index: dict) -> None:
        self.thrs = np.asarray(params.iouThrs, dtype=np.float64)
        self.max_dets = np.asarray(params.maxDets)
        self.area_rngs = list(params.areaRng)
        self.img_ids = list(params.imgIds)
        self.images, self.iou_type, self.lvis, self.img_index = images, iou_type, lvis, img_index
        self.gts, self.dt_anns = gts, dt_anns

    def _geometry(self, ann: dict) -> Any:
        if self.iou_type == "bbox":
            return ann["bbox"]
        img = self.images[ann["image_id"]]
        return _rle(ann["segmentation"], int(img["width"]), int(img["height"]))

    def ious(self, dts: list[dict], gts: list[dict]) -> np.ndarray:
        """``(D, G)`` IoUs of one pair's sorted, truncated detections with its gts (file order)."""
        from faster_coco_eval.core import mask as mask_api

        if not dts or not gts:
            return np.zeros((len(dts), len(gts)))
        crowd = [int(g.get("iscrowd", 0)) for g in gts]
        d = [self._geometry(a) for a in dts]
        g = [self._geometry(a) for a in gts]
        return np.asarray(mask_api.iou(d, g, crowd), dtype=np.float64).reshape(len(dts), len(gts))

    def first_tp_only(self, unsure: np.ndarray, cat_ids: list) -> np.ndarray:
        """For the ``unsure`` cells ``(T, K, A, M)``: is the first counted detection a TP and the second one not?"""
        num_t, num_a, num_m = len(self.thrs), len(self.area_rngs), len(self.max_dets)
        img_index, img_ids = self.img_index, self.img_ids
        result = np.zeros_like(unsure)
        walk_cats = {cat_ids[k]: k for k in np.nonzero(unsure.any(axis=(0, 2, 3)))[0]}
        # the evaluated detections, in annotation order (the tie-break of COCO's stable sorts)
        dts = [d for d in self.dt_anns if d["category_id"] in walk_cats and d["image_id"] in img_index]
        gt_by_pair: dict[tuple[int, int], list[dict]] = {}
        for g in self.gts:
            if g["category_id"] in walk_cats:
                gt_by_pair.setdefault((img_index[g["image_id"]], g["category_id"]), []).append(g)
        d_cat = np.array([walk_cats[d["category_id"]] for d in dts], dtype=np.int64)
        d_img = np.array([img_index[d["image_id"]] for d in dts], dtype=np.int64)
        d_score = np.array([d["score"] for d in dts], dtype=np.float64)
        pos = np.arange(len(dts))
        for cat, k in progress(walk_cats.items(), desc="exact precision", unit="cat"):
            sel = pos[d_cat == k]
            if sel.size == 0:
                continue
            # per image: by decreasing score, ties in annotation order (COCO's per-image mergesort), then truncated
            order = sel[np.lexsort((sel, -d_score[sel], d_img[sel]))]
            img_of = d_img[order]
            starts = np.flatnonzero(np.r_[True, img_of[1:] != img_of[:-1]])
            rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
            keep = rank < self.max_dets[-1]
            order, img_of, rank = order[keep], img_of[keep], rank[keep]
            # COCO's accumulate: images concatenated in id order, then a stable sort by decreasing score
            glob = np.argsort(-d_score[order], kind="mergesort")
            need = unsure[:, k]  # (T, A, M)
            found = np.zeros((num_t, num_a, num_m), dtype=np.int64)
            first_tp = np.zeros((num_t, num_a, num_m), dtype=bool)
            second_tp = np.zeros((num_t, num_a, num_m), dtype=bool)
            matchers: dict[tuple[int, int], PairMatcher] = {}
            pairs: dict[int, PairData] = {}
            for g in glob:
                open_cells = need & (found < 2)
                if not open_cells.any():
                    break
                i, r = int(img_of[g]), int(rank[g])
                in_m = r < self.max_dets  # (M,)
                for a in np.nonzero(open_cells.any(axis=(0, 2)))[0]:
                    key = (i, int(a))
                    if key not in matchers:
                        if i not in pairs:
                            lo, hi = np.searchsorted(img_of, i, "left"), np.searchsorted(img_of, i, "right")
                            img_dts = [dts[j] for j in order[lo:hi].tolist()]  # img_of is sorted
                            gts = gt_by_pair.get((i, cat), [])
                            pairs[i] = PairData(self.ious(img_dts, gts), gts, img_dts)
                        not_exh = self.lvis and cat in self.images[img_ids[i]].get("not_exhaustive_category_ids", ())
                        matchers[key] = PairMatcher(pairs[i], self.area_rngs[a], self.thrs, not_exh)
                    tp, ign = matchers[key].status(r)
                    counted = (~ign)[:, None] & in_m[None, :]  # (T, M)
                    f = found[:, a]
                    first_tp[:, a] |= counted & (f == 0) & tp[:, None]
                    second_tp[:, a] |= counted & (f == 1) & tp[:, None]
                    found[:, a] += counted
            result[:, k] = need & first_tp & ~second_tp
        return result


def _rle(seg: Any, width: int, height: int) -> Any:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as the RLE the engine's IoU takes."""
    from faster_coco_eval.core import mask as mask_api

    if isinstance(seg, dict) and isinstance(seg.get("counts"), bytes):
        seg = {"size": seg["size"], "counts": seg["counts"].decode()}
    return mask_api.segmToRle(seg, width, height)
