"""COCO box / mask AP: pure functions and an mmengine metric (:class:`CocoMetric`).

Pure functions (they also back ``forge-eval coco``)::

    evaluate_coco(gt, results, iou_type='bbox', *, img_ids=None, classwise=False, max_dets=(1, 10, 100)) -> dict
    detections_to_coco(image_id, det, label_to_cat_id) -> (bbox_results, segm_results)
    load_results(results, name=None) -> (list[dict], source_name)
    format_coco_table(summary, names=COCO_SUMMARY_NAMES, title='') -> str
    format_classwise_table(per_class) -> str

``evaluate_coco`` returns the 12 numbers of ``pycocotools.COCOeval.summarize`` under :data:`COCO_SUMMARY_NAMES`
(``mAP, mAP_50, mAP_75, mAP_s, mAP_m, mAP_l, AR@1, AR@10, AR@100, AR_s@100, AR_m@100, AR_l@100``), the same list as
``stats``, and with ``classwise=True`` ``per_class``: one dict per category (``category_id, name, AP, AP50, AP75, APs,
APm, APl``; ``nan`` where the category has no ground truth). Values are fractions in ``[0, 1]``; ``-1`` means "no
ground truth to measure" exactly as in pycocotools.

Engine: faster-coco-eval's C++ ``COCOeval_faster`` (IoUs, matching, accumulation). It differs from pycocotools in
one floating-point detail: pycocotools computes precision as ``tp / (tp + fp + eps)``, which is ``1 - 2.2e-16``
(not ``1.0``) when a category's first counted detection is a true positive and the second is not.
:func:`_match_pycocotools_precision` re-derives those cells (only the first two counted detections of each category
are matched again, in Python), so every number here equals pycocotools' bit for bit; the tests check this.

Result format (COCO json): ``{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}`` for boxes and
``{'image_id', 'category_id', 'segmentation': RLE, 'score'}`` for masks. Mask results deliberately carry no
``bbox`` so that COCO's loader derives their ``area`` from the mask and the small/medium/large buckets use the mask
area (with a ``bbox`` present, pycocotools would use the box area). The mask score is ``Detections.mask_scores``
when given (YOLACT++ mask re-scoring), else ``Detections.scores``.

Ground truth for :class:`CocoMetric` (choose one):

* ``ann_file=...``: the COCO json the dataset was built from (recommended; exact official areas). Contiguous
  labels map to category ids via ``dataset_meta['cat_ids']`` when the dataset provides it, else via the file's
  sorted category ids (what :class:`forge.data.coco_reader.CocoAnnotations` does).
* ``ann_file=None``: every :class:`DetSample` must carry its ground truth **in original-image coordinates** as an
  :class:`Instances` in ``sample.meta.extra['ori_gt']`` (boxes xyxy, contiguous labels, ``iscrowd``, and bool masks
  at ``ori_shape`` for ``segm``). Areas are the mask pixel counts (box areas without masks) unless the dataset puts
  the official ones in ``sample.meta.extra['ori_gt_areas']`` (``(N,)`` floats). Category ids come from
  ``dataset_meta['cat_ids']`` (label -> id list) or default to ``label + 1``; names from ``dataset_meta['classes']``.

Distributed runs: ``process`` appends exactly one record per image, so mmengine's gather + truncation to
``len(dataset)`` works; duplicate image ids (padding) are dropped with a warning.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import os.path as osp
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forge.data.coco_reader import AnnotationError, CocoAnnotations

__all__ = [
    "COCO_SUMMARY_NAMES",
    "CocoMetric",  # noqa: F822 (defined on first access, see __getattr__)
    "ResultsError",
    "detections_to_coco",
    "evaluate_coco",
    "format_classwise_table",
    "format_coco_table",
    "load_results",
]

#: summary names, in the order of pycocotools' ``COCOeval.stats``
COCO_SUMMARY_NAMES = (
    "mAP",
    "mAP_50",
    "mAP_75",
    "mAP_s",
    "mAP_m",
    "mAP_l",
    "AR@1",
    "AR@10",
    "AR@100",
    "AR_s@100",
    "AR_m@100",
    "AR_l@100",
)
AREA_LABELS = ("all", "small", "medium", "large")
_ONE_MINUS_EPS = 1.0 / (1.0 + np.spacing(1))  # pycocotools' precision of "1 TP out of 1"
_FORCE_WALK = False  # tests set this to check the re-matching path of _match_pycocotools_precision everywhere


class ResultsError(ValueError):
    """Bad detection results; the message names the file (or source) and the entry at fault."""


def _silent(*_args, **_kwargs) -> None:
    pass


# ---------------------------------------------------------------------------------------------------------- inputs
def load_results(results: str | os.PathLike | Sequence[dict], name: str | None = None) -> tuple[list[dict], str]:
    """Read COCO-format results (json path or list of dicts); returns ``(list_of_shallow_copies, source_name)``."""
    if isinstance(results, (str, os.PathLike)):
        src = str(results)
        try:
            with open(src) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ResultsError(f"{src}: file not found") from None
        except json.JSONDecodeError as e:
            raise ResultsError(f"{src}: not valid JSON ({e})") from None
    else:
        src, data = name or "<results>", results
    if not isinstance(data, list):
        raise ResultsError(f"{src}: results must be a JSON list of detections, got {type(data).__name__}")
    out = []
    for i, r in enumerate(data):
        if not isinstance(r, Mapping):
            raise ResultsError(f"{src}: result #{i} is not an object")
        out.append(dict(r))
    return out, name or src


def _load_gt(gt: Any, cls: type[CocoAnnotations] = CocoAnnotations) -> CocoAnnotations:
    if isinstance(gt, cls):
        return gt
    if isinstance(gt, CocoAnnotations):  # e.g. a plain CocoAnnotations given to the LVIS evaluator
        return cls(gt.dataset, gt.source, degenerate="keep")
    return cls.load(gt, degenerate="keep")


def _first_bad(flags: Sequence[bool] | np.ndarray) -> int:
    return int(np.argmax(np.asarray(flags, dtype=bool)))


def _check_results(results: list[dict], coco: CocoAnnotations, iou_type: str, src: str) -> None:
    """Validate detections before they reach the C++ engine (which would crash or assert without context).

    Column-wise (C-speed) checks first; the per-entry message is only built for the first offending entry.
    """
    if not results:
        return

    def fail(i: int, msg: str):
        raise ResultsError(f"{src}: result #{i} (image_id={results[i].get('image_id')!r}): {msg}")

    missing = object()
    for key in ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation"):
        col = [r.get(key, missing) for r in results]
        if any(v is missing for v in col):
            fail(col.index(missing), f"missing key '{key}'")
        if key == "image_id":
            img_col = col
            bad = set(col) - coco.images.keys()
            if bad:
                fail(_first_bad([v in bad for v in col]), f"image_id is not in the ground truth {coco.source}")
        elif key == "category_id":
            bad = set(col) - coco.cats.keys()
            if bad:
                fail(
                    _first_bad([v in bad for v in col]),
                    f"unknown category_id {next(iter(bad))!r} (not among the {len(coco.cats)} categories of "
                    f"{coco.source})",
                )
        elif key == "score":
            if not all(type(v) in (int, float) or isinstance(v, np.floating) for v in col):
                fail(
                    _first_bad([not isinstance(v, (int, float)) or isinstance(v, bool) for v in col]),
                    "score must be a number",
                )
            arr = np.asarray(col, dtype=np.float64)
            if not np.isfinite(arr).all():
                fail(_first_bad(~np.isfinite(arr)), "score must be finite")
        elif key == "bbox":
            try:
                arr = np.asarray(col, dtype=np.float64)
                ok = arr.ndim == 2 and arr.shape[1] == 4
            except (TypeError, ValueError):
                ok = False
            if not ok:
                shape_ok = [isinstance(b, (list, tuple)) and len(b) == 4 for b in col]
                fail(
                    _first_bad([not s for s in shape_ok]) if not all(shape_ok) else 0,
                    "bbox must be 4 finite numbers [x, y, w, h]",
                )
            if not np.isfinite(arr).all():
                fail(_first_bad(~np.isfinite(arr).all(1)), "bbox must be 4 finite numbers [x, y, w, h]")
            if (arr[:, 2:] < 0).any():
                fail(_first_bad((arr[:, 2:] < 0).any(1)), "bbox has a negative width/height")
        else:  # segmentation
            for i, seg in enumerate(col):
                if not isinstance(seg, Mapping) or "size" not in seg or "counts" not in seg:
                    fail(i, "segmentation must be an RLE dict with 'size' and 'counts'")
                if not isinstance(seg["counts"], (str, bytes)):
                    fail(i, "segmentation must be a compressed RLE (string 'counts')")
                img = coco.images[img_col[i]]
                h, w = seg["size"]
                if h != img["height"] or w != img["width"]:
                    fail(
                        i, f"RLE size {list(seg['size'])} differs from the image size [{img['height']}, {img['width']}]"
                    )


# --------------------------------------------------------------------------------------------------- the engine
def _run_engine(
    dataset: dict,
    results: list[dict],
    iou_type: str,
    img_ids: Sequence[int] | None,
    max_dets: Sequence[int],
    lvis: bool = False,
    cat_ids: Sequence[int] | None = None,
):
    """Evaluate with faster-coco-eval; returns the ``COCOeval_faster`` object after accumulate + precision fix.

    ``dataset`` is a validated ground-truth dict; ``results`` validated result dicts (both are shallow-copied: the
    engine writes 'ignore'/'rle'/'id'/'area' into the dicts it is given).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    gt_dict = {k: v for k, v in dataset.items() if k != "annotations"}
    gt_dict["annotations"] = [dict(a) for a in dataset["annotations"]]
    gt_api = COCO(gt_dict, print_function=_silent)
    dt_api = _results_api(gt_api, results, COCO)
    ev = COCOeval_faster(gt_api, dt_api, iou_type, print_function=_silent, lvis_style=lvis)
    if img_ids is not None:
        ev.params.imgIds = sorted({int(i) for i in img_ids})
    if cat_ids is not None:
        ev.params.catIds = sorted({int(c) for c in cat_ids})
    ev.params.maxDets = [int(m) for m in max_dets]
    ev.evaluate()
    ev.accumulate()
    _match_pycocotools_precision(ev, lvis=lvis)
    return ev


def _results_api(gt_api, results: list[dict], coco_cls: type):
    """``gt_api.loadRes(results)`` with the same rules, batched (the library computes mask areas one by one).

    Rules (pycocotools' ``loadRes``): if the first result has a ``bbox``, every ``area`` is ``w * h``; else, if it
    has a ``segmentation``, ``area`` is the mask area and a missing ``bbox`` is the mask's box. Ids are ``1..N``,
    ``iscrowd`` is 0. (The box-as-polygon ``segmentation`` that loadRes adds to box results is only used by segm
    evaluation of box-only results, which :func:`_check_results` rejects.)
    """
    from faster_coco_eval.core import mask as mask_api

    anns = [dict(r) for r in results]
    if anns and "bbox" in anns[0] and anns[0]["bbox"] != []:
        for i, a in enumerate(anns):
            a["area"] = a["bbox"][2] * a["bbox"][3]
            a["id"] = i + 1
            a["iscrowd"] = 0
    elif anns and "segmentation" in anns[0]:
        rles = [a["segmentation"] for a in anns]
        areas = mask_api.area(rles).tolist()
        missing = [i for i, a in enumerate(anns) if "bbox" not in a]
        boxes = mask_api.toBbox([rles[i] for i in missing]).tolist() if missing else []
        for i, box in zip(missing, boxes):
            anns[i]["bbox"] = box
        for i, a in enumerate(anns):
            a["area"] = areas[i]
            a["id"] = i + 1
            a["iscrowd"] = 0
    res = coco_cls(print_function=_silent)
    res.dataset = {
        "images": list(gt_api.dataset["images"]),
        "categories": [dict(c) for c in gt_api.dataset["categories"]],
        "annotations": anns,
    }
    res.createIndex()
    return res


@contextlib.contextmanager
def _gc_paused():
    """Evaluation allocates ~10 dicts per detection; Python's cyclic GC would rescan them repeatedly."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _PairMatcher:
    """COCO greedy matching of one (image, category) pair in one area range, all IoU thresholds at once.

    Detections are matched lazily in score order (:meth:`status` of rank ``r`` matches ranks ``0..r`` only), since
    the precision fix needs just the first few detections of a category.

    Args:
        ious: ``(D, G)`` IoUs, detections sorted by decreasing score (stable), gts in file order.
        gts, dts: the annotation dicts in the same orders.
        area_rng: ``[lo, hi]`` area bucket; objects outside it are ignored.
        thrs: ``(T,)`` IoU thresholds.
        not_exhaustive: LVIS: unmatched detections of this category are ignored in this image.
    """

    def __init__(self, ious, gts: list[dict], dts: list[dict], area_rng, thrs: np.ndarray, not_exhaustive: bool):
        num_g = len(gts)
        crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
        g_area = np.array([g["area"] for g in gts], dtype=np.float64)
        g_ign = crowd | (g_area < area_rng[0]) | (g_area > area_rng[1])
        order = np.argsort(g_ign, kind="mergesort")  # regular gts first, as in COCO
        self.crowd, self.g_ign = crowd[order], g_ign[order]
        self.g_ids = np.array([gts[j]["id"] for j in order], dtype=np.int64)
        self.n_reg = int((~self.g_ign).sum())
        self.num_g = num_g
        self.ious = np.asarray(ious, dtype=np.float64).reshape(len(dts), num_g)[:, order] if num_g else None
        self.thr = np.minimum(thrs, 1 - 1e-10)[:, None]
        self.taken = np.zeros((len(thrs), num_g), dtype=bool)
        self.rows = np.arange(len(thrs))
        d_area = np.array([d["area"] for d in dts], dtype=np.float64)
        self.d_out = (d_area < area_rng[0]) | (d_area > area_rng[1]) | not_exhaustive
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


def _match_pycocotools_precision(ev, lvis: bool = False) -> None:
    """Make ``ev.eval['precision']`` equal pycocotools' (see the module docstring), in place.

    A precision of exactly 1.0 comes from a run of ``L`` TPs before any FP. pycocotools' ``tp / (tp + fp + eps)``
    rounds to 1.0 for ``L >= 2`` but gives ``1 - eps`` for ``L == 1``; the C++ engine gives 1.0 for both. In a
    cell (IoU threshold, category, area, maxDets) the 1.0 values sit at the recall thresholds ``r <= L / n_gt``, so
    their count usually tells ``L == 1`` from ``L >= 2``. Where it cannot (no threshold between ``1 / n_gt`` and
    ``2 / n_gt``, i.e. more than 200 ground truths), the first two counted (non-ignored) detections of the category
    are matched again in COCO's global order. Cells with ``L == 1`` get ``1 - eps`` instead of 1.0.
    """
    prec = ev.eval["precision"]  # (T, R, K, A, M)
    ones = prec == 1.0
    need_all = ones.any(axis=1)  # (T, K, A, M)
    if not need_all.any():
        return
    p = ev.params
    cat_ids, img_ids = list(p.catIds), list(p.imgIds)
    area_rngs = np.asarray(p.areaRng, dtype=np.float64)
    cat_index = {int(c): k for k, c in enumerate(cat_ids)}
    img_index = {int(img): i for i, img in enumerate(img_ids)}

    # -- counting test: number of counted ground truths per (category, area)
    gts = [g for g in ev.cocoGt.dataset["annotations"] if g["image_id"] in img_index and g["category_id"] in cat_index]
    g_cat = np.array([cat_index[g["category_id"]] for g in gts], dtype=np.int64)
    g_area = np.array([g["area"] for g in gts], dtype=np.float64)
    g_crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    n_gt = np.zeros((len(cat_ids), len(area_rngs)), dtype=np.int64)
    for a, (lo, hi) in enumerate(area_rngs):
        counted = ~g_crowd & (g_area >= lo) & (g_area <= hi)
        n_gt[:, a] = np.bincount(g_cat[counted], minlength=len(cat_ids))
    rec_thrs = np.asarray(p.recThrs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        n1 = (rec_thrs[:, None, None] <= (1.0 / n_gt)[None]).sum(axis=0)  # (K, A)
        n2 = (rec_thrs[:, None, None] <= (2.0 / n_gt)[None]).sum(axis=0)
    n_ones = ones.sum(axis=1)  # (T, K, A, M)
    single = need_all & (n_ones == n1[None, :, :, None]) & (n2 > n1)[None, :, :, None]
    unsure = need_all & ~single & (n_ones <= n1[None, :, :, None])
    if _FORCE_WALK:  # tests: exercise the matching path on every cell
        single, unsure = np.zeros_like(need_all), need_all
    if unsure.any():
        single |= _walk_first_detections(ev, unsure, cat_ids, img_index, lvis)
    t_idx, k_idx, a_idx, m_idx = np.nonzero(single)
    for t, k, a, m in zip(t_idx, k_idx, a_idx, m_idx):
        col = prec[t, :, k, a, m]
        col[col == 1.0] = _ONE_MINUS_EPS


def _walk_first_detections(ev, unsure: np.ndarray, cat_ids: list, img_index: dict, lvis: bool) -> np.ndarray:
    """For the ``unsure`` cells ``(T, K, A, M)``: is the first counted detection a TP and the second one not?"""
    p = ev.params
    thrs = np.asarray(p.iouThrs, dtype=np.float64)
    max_det_arr = np.asarray(p.maxDets)
    area_rngs = list(p.areaRng)
    num_t, num_a, num_m = len(thrs), len(area_rngs), len(max_det_arr)
    img_ids = list(p.imgIds)
    nel = getattr(ev, "img_nel", {}) if lvis else {}
    result = np.zeros_like(unsure)
    walk_cats = {cat_ids[k]: k for k in np.nonzero(unsure.any(axis=(0, 2, 3)))[0]}
    # the detections the engine evaluated, in annotation order (the tie-break of COCO's stable sorts)
    dts = [
        d
        for d in ev.cocoDt.dataset["annotations"]
        if d["category_id"] in walk_cats and d["image_id"] in img_index and not d.get("drop", False)
    ]
    gt_by_pair: dict[tuple[int, int], list[dict]] = {}
    for g in ev.cocoGt.dataset["annotations"]:
        if g["category_id"] in walk_cats and g["image_id"] in img_index:
            gt_by_pair.setdefault((img_index[g["image_id"]], g["category_id"]), []).append(g)
    d_cat = np.array([walk_cats[d["category_id"]] for d in dts], dtype=np.int64)
    d_img = np.array([img_index[d["image_id"]] for d in dts], dtype=np.int64)
    d_score = np.array([d["score"] for d in dts], dtype=np.float64)
    pos = np.arange(len(dts))
    for cat, k in walk_cats.items():
        sel = pos[d_cat == k]
        if sel.size == 0:
            continue
        # per image: by decreasing score, ties in annotation order (COCO's per-image mergesort), then truncated
        order = sel[np.lexsort((sel, -d_score[sel], d_img[sel]))]
        img_of = d_img[order]
        starts = np.flatnonzero(np.r_[True, img_of[1:] != img_of[:-1]])
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        keep = rank < max_det_arr[-1]
        order, img_of, rank = order[keep], img_of[keep], rank[keep]
        # COCO's accumulate: images concatenated in id order, then a stable sort by decreasing score
        glob = np.argsort(-d_score[order], kind="mergesort")
        need = unsure[:, k]  # (T, A, M)
        found = np.zeros((num_t, num_a, num_m), dtype=np.int64)
        first_tp = np.zeros((num_t, num_a, num_m), dtype=bool)
        second_tp = np.zeros((num_t, num_a, num_m), dtype=bool)
        matchers: dict[tuple[int, int], _PairMatcher] = {}
        per_img: dict[int, list[dict]] = {}
        for g in glob:
            open_cells = need & (found < 2)
            if not open_cells.any():
                break
            i, r = int(img_of[g]), int(rank[g])
            in_m = r < max_det_arr  # (M,)
            for a in np.nonzero(open_cells.any(axis=(0, 2)))[0]:
                key = (i, int(a))
                if key not in matchers:
                    if i not in per_img:
                        per_img[i] = [dts[j] for j in order[img_of == i]]
                    gts = gt_by_pair.get((i, cat), [])
                    ious = ev.ious.get((img_ids[i], cat), [])
                    if len(gts) == 0 or len(ious) == 0:
                        ious = np.zeros((len(per_img[i]), len(gts)))
                    not_exh = bool(lvis and cat in nel.get(img_ids[i], ()))
                    matchers[key] = _PairMatcher(ious, gts, per_img[i], area_rngs[a], thrs, not_exh)
                tp, ign = matchers[key].status(r)
                counted = (~ign)[:, None] & in_m[None, :]  # (T, M)
                f = found[:, a]
                first_tp[:, a] |= counted & (f == 0) & tp[:, None]
                second_tp[:, a] |= counted & (f == 1) & tp[:, None]
                found[:, a] += counted
        result[:, k] = need & first_tp & ~second_tp
    return result


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def _coco_summary(ev) -> list[float]:
    """The 12 numbers of pycocotools' ``summarize`` (same slicing and means)."""
    p = ev.params
    prec, rec = ev.eval["precision"], ev.eval["recall"]
    thrs = np.asarray(p.iouThrs)
    m_last = len(p.maxDets) - 1

    def ap(iou=None, area=0):
        s = prec if iou is None else prec[np.where(thrs == iou)[0]]
        return _mean_valid(s[:, :, :, area, m_last])

    def ar(m, area=0):
        return _mean_valid(rec[:, :, area, m])

    return [
        ap(),
        ap(0.5),
        ap(0.75),
        ap(area=1),
        ap(area=2),
        ap(area=3),
        ar(0),
        ar(min(1, m_last)),
        ar(min(2, m_last)),
        ar(m_last, 1),
        ar(m_last, 2),
        ar(m_last, 3),
    ]


def _per_class(ev, coco: CocoAnnotations) -> list[dict]:
    """Per-category AP (mmdet's classwise table): ``precision[..., k, area, last maxDets]`` means, nan if no GT."""
    prec = ev.eval["precision"]
    thrs = np.asarray(ev.params.iouThrs)
    i50, i75 = np.where(thrs == 0.5)[0], np.where(thrs == 0.75)[0]
    out = []
    for k, cat in enumerate(ev.params.catIds):
        pk = prec[:, :, k, :, -1]

        def mean(s):
            v = s[s > -1]
            return float(np.mean(v)) if v.size else float("nan")

        out.append(
            {
                "category_id": int(cat),
                "name": str(coco.cats[cat]["name"]),
                "AP": mean(pk[:, :, 0]),
                "AP50": mean(pk[i50, :, 0]),
                "AP75": mean(pk[i75, :, 0]),
                "APs": mean(pk[:, :, 1]),
                "APm": mean(pk[:, :, 2]),
                "APl": mean(pk[:, :, 3]),
            }
        )
    return out


def _check_ids(coco: CocoAnnotations, img_ids: Sequence[int] | None, cat_ids: Sequence[int] | None) -> None:
    if img_ids is not None:
        unknown = [i for i in img_ids if i not in coco.images]
        if unknown:
            raise ResultsError(f"{coco.source}: image ids {unknown[:5]} are not in the ground truth")
    if cat_ids is not None:
        unknown = [c for c in cat_ids if c not in coco.cats]
        if unknown:
            raise ResultsError(f"{coco.source}: category ids {unknown[:5]} are not in the ground truth")


def evaluate_coco(
    gt: str | os.PathLike | dict | CocoAnnotations,
    results: str | os.PathLike | Sequence[dict],
    iou_type: str = "bbox",
    *,
    img_ids: Sequence[int] | None = None,
    classwise: bool = False,
    max_dets: Sequence[int] = (1, 10, 100),
    cat_ids: Sequence[int] | None = None,
) -> dict:
    """COCO AP of ``results`` against ``gt``, identical to pycocotools' ``COCOeval`` (evaluate/accumulate/summarize).

    Args:
        gt: COCO instances json path, dict or :class:`CocoAnnotations`.
        results: COCO result json path or list of result dicts (an empty list is fine: AP 0).
        iou_type: ``'bbox'`` or ``'segm'``.
        img_ids: evaluate only these images (default: every ground-truth image).
        classwise: add ``per_class`` (see the module docstring).
        max_dets: pycocotools' ``maxDets`` (three values; the last one is used for AP).
        cat_ids: evaluate only these categories (default: all; a dataset trained on a class subset).

    Returns:
        ``{name: value for name in COCO_SUMMARY_NAMES}`` plus ``stats`` (the same 12 numbers, in order),
        ``num_images``, ``num_detections`` and optionally ``per_class``.

    Raises:
        AnnotationError / ResultsError naming the file and the entry at fault.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if len(max_dets) != 3:
        raise ValueError(f"max_dets must have 3 values (pycocotools' summary layout), got {list(max_dets)}")
    with _gc_paused():
        coco = _load_gt(gt)
        dets, src = load_results(results)
        _check_results(dets, coco, iou_type, src)
        _check_ids(coco, img_ids, cat_ids)
        ev = _run_engine(coco.dataset, dets, iou_type, img_ids, max_dets, cat_ids=cat_ids)
    stats = _coco_summary(ev)
    out: dict[str, Any] = dict(zip(COCO_SUMMARY_NAMES, stats))
    out["stats"] = stats
    out["num_images"] = len(ev.params.imgIds)
    out["num_detections"] = len(dets)
    if classwise:
        out["per_class"] = _per_class(ev, coco)
    return out


# ------------------------------------------------------------------------------------------------- formatting
def _fmt(v: float) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.3f}"


def format_coco_table(summary: Mapping[str, Any], names: Sequence[str] = COCO_SUMMARY_NAMES, title: str = "") -> str:
    """Two-column table ``name | value`` of the summary numbers (3 decimals)."""
    width = max(len(n) for n in names)
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  value")
    lines.append("-" * (width + 8))
    lines += [f"{n:<{width}}  {_fmt(float(summary[n]))}" for n in names]
    return "\n".join(lines)


def format_classwise_table(per_class: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> str:
    """Per-category table (category, AP, AP50, ...), 3 decimals, ``nan`` for categories without ground truth."""
    if not per_class:
        return "(no categories)"
    keys = list(keys or [k for k in per_class[0] if k not in ("category_id", "name")])
    width = max(8, max(len(str(c["name"])) for c in per_class))
    head = f"{'category':<{width}}  " + "  ".join(f"{k:>6}" for k in keys)
    rows = [f"{str(c['name']):<{width}}  " + "  ".join(f"{_fmt(float(c[k])):>6}" for k in keys) for c in per_class]
    return "\n".join([head, "-" * len(head), *rows])


# --------------------------------------------------------------------------------------------- predictions -> json
def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor (torch itself is not imported by the pure functions)
        return x.detach().cpu().numpy()
    return np.asarray(x)


def detections_to_coco(
    image_id: int,
    det: Any,
    label_to_cat_id: Mapping[int, int] | Sequence[int],
) -> tuple[list[dict], list[dict]]:
    """One image's :class:`Detections` (original-image xyxy, contiguous labels) -> COCO result dicts.

    Returns ``(bbox_results, segm_results)``; ``segm_results`` is empty when ``det.masks`` is None. Masks may be
    ``(N, H, W)`` bitmaps or a list of RLE dicts; segm results carry no ``bbox`` (see the module docstring) and are
    scored with ``det.mask_scores`` when present.

    Raises:
        ResultsError: a label has no category id.
    """
    from forge.ops.masks import as_rles

    boxes = _np(det.boxes).astype(np.float64).reshape(-1, 4)
    scores = _np(det.scores).astype(np.float64).reshape(-1)
    labels = _np(det.labels).astype(np.int64).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n or labels.shape[0] != n:
        raise ResultsError(f"image {image_id}: {n} boxes but {scores.shape[0]} scores and {labels.shape[0]} labels")
    cat_ids = []
    for lab in labels.tolist():
        try:
            if lab < 0:  # a list would silently index from the end
                raise IndexError(lab)
            cat_ids.append(int(label_to_cat_id[lab]))
        except (KeyError, IndexError):
            raise ResultsError(
                f"image {image_id}: predicted label {lab} has no category id (the dataset has "
                f"{len(label_to_cat_id)} classes)"
            ) from None
    bbox_res = []
    for b, s, c in zip(boxes.tolist(), scores.tolist(), cat_ids):
        bbox_res.append(
            {"image_id": image_id, "category_id": c, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
        )
    segm_res = []
    if det.masks is not None:
        rles = as_rles(det.masks)
        if len(rles) != n:
            raise ResultsError(f"image {image_id}: {len(rles)} masks for {n} detections")
        mscores = scores if det.mask_scores is None else _np(det.mask_scores).astype(np.float64).reshape(-1)
        for rle, s, c in zip(rles, mscores.tolist(), cat_ids):
            segm_res.append({"image_id": image_id, "category_id": c, "segmentation": rle, "score": s})
    return bbox_res, segm_res


# -------------------------------------------------------------------------------------------------------- metric
# The metric class needs mmengine (and so torch, several seconds to import). It is defined on first access
# (PEP 562 module __getattr__) so that ``forge-eval`` and the pure functions start fast; ``from
# forge.evaluation.coco import CocoMetric``, hydra ``_target_`` and pickling work as for a normal class.
def _define_coco_metric() -> type:
    from mmengine.evaluator import BaseMetric
    from mmengine.logging import print_log

    from forge.data.structures import Detections, DetSample, Instances

    class CocoMetric(BaseMetric):
        """COCO box/mask AP as an mmengine metric (mmdet ``CocoMetric`` behaviour; engine: :func:`evaluate_coco`).

        Args:
            ann_file: COCO instances json of the evaluated split, or None to build the ground truth from
                ``sample.meta.extra['ori_gt']`` (see the module docstring).
            metric: ``'bbox'``, ``'segm'`` or both.
            classwise: log a per-category AP table and add ``{metric}_{name}_precision`` keys.
            format_only: only write the result json files (test-dev submission) and return ``{}``.
            outfile_prefix: where result files go: ``{prefix}.bbox.json`` / ``{prefix}.segm.json`` (required with
                ``format_only``; optional otherwise).
            max_dets: pycocotools' ``maxDets``.
            round_digits: decimals of the returned numbers (mmdet: 3); None keeps full precision.
            collect_device, prefix: see :class:`mmengine.evaluator.BaseMetric`; keys read ``coco/bbox_mAP``,
                ``coco/segm_mAP_50``, ``coco/bbox_AR@100``, ...
        """

        default_prefix = "coco"
        _gt_class = CocoAnnotations

        def __init__(
            self,
            ann_file: str | None = None,
            metric: str | Sequence[str] = "bbox",
            classwise: bool = False,
            format_only: bool = False,
            outfile_prefix: str | None = None,
            max_dets: Sequence[int] = (1, 10, 100),
            round_digits: int | None = 3,
            collect_device: str = "cpu",
            prefix: str | None = None,
        ) -> None:
            super().__init__(collect_device=collect_device, prefix=prefix)
            metrics = [metric] if isinstance(metric, str) else list(metric)
            for m in metrics:
                if m not in ("bbox", "segm"):
                    raise ValueError(f"metric must be 'bbox' and/or 'segm', got {m!r}")
            if format_only and not outfile_prefix:
                raise ValueError("format_only=True needs outfile_prefix (where to write the result json files)")
            self.metrics = metrics
            self.classwise = classwise
            self.format_only = format_only
            self.outfile_prefix = outfile_prefix
            self.max_dets = tuple(int(m) for m in max_dets)
            self.round_digits = round_digits
            self.ann_file = ann_file
            self._gt = None if ann_file is None else self._gt_class.load(ann_file, degenerate="keep")

        # ------------------------------------------------------------------ label <-> category id
        def _cat_ids(self) -> list[int]:
            meta = self.dataset_meta or {}
            if meta.get("cat_ids") is not None:
                ids = [int(c) for c in meta["cat_ids"]]
                if self._gt is not None:
                    unknown = [c for c in ids if c not in self._gt.cats]
                    if unknown:
                        raise AnnotationError(
                            f"{self._gt.source}: dataset_meta['cat_ids'] has unknown ids {unknown[:5]}"
                        )
                return ids
            if self._gt is not None:
                return list(self._gt.cat_ids)
            n = len(meta["classes"]) if meta.get("classes") is not None else None
            if n is None:
                raise ValueError(
                    "CocoMetric without ann_file needs dataset_meta with 'classes' (and optionally 'cat_ids')"
                )
            return list(range(1, n + 1))

        # ------------------------------------------------------------------ per-image records
        def process(self, data_batch: Any, data_samples: Sequence[DetSample]) -> None:
            from forge.ops.masks import as_rles

            want_masks = "segm" in self.metrics
            for sample in data_samples:
                if not isinstance(sample, DetSample):
                    raise TypeError(f"CocoMetric expects DetSample predictions, got {type(sample).__name__}")
                meta, det = sample.meta, sample.pred
                if det is None:
                    raise ValueError(
                        f"image {meta.image_id}: DetSample.pred is None (run the model with mode='predict')"
                    )
                if want_masks and det.masks is None:
                    raise ValueError(f"image {meta.image_id}: metric 'segm' needs predicted masks (Detections.masks)")
                rec: dict[str, Any] = {
                    "img_id": int(meta.image_id),
                    "ori_shape": tuple(int(v) for v in meta.ori_shape),
                    "boxes": _np(det.boxes).astype(np.float32).reshape(-1, 4),
                    "scores": _np(det.scores).astype(np.float32).reshape(-1),
                    "labels": _np(det.labels).astype(np.int64).reshape(-1),
                    "mask_scores": None if det.mask_scores is None else _np(det.mask_scores).astype(np.float32),
                    "rles": as_rles(det.masks) if (want_masks and det.masks is not None) else None,
                }
                if self._gt is None:
                    rec["gt"] = self._gt_record(meta, want_masks)
                self.results.append(rec)

        @staticmethod
        def _gt_record(meta, want_masks: bool) -> dict:
            from forge.ops.masks import mask_to_rle, rle_area

            gt = meta.extra.get("ori_gt")
            if not isinstance(gt, Instances):
                raise ValueError(
                    f"image {meta.image_id}: CocoMetric(ann_file=None) needs the original-coordinate ground truth "
                    "as an Instances in DetSample.meta.extra['ori_gt']"
                )
            boxes = _np(gt.boxes).astype(np.float64).reshape(-1, 4)
            rles = None
            if want_masks:
                if gt.masks is None:
                    raise ValueError(f"image {meta.image_id}: metric 'segm' needs masks in meta.extra['ori_gt']")
                rles = mask_to_rle(gt.masks)
            areas = meta.extra.get("ori_gt_areas")
            if areas is not None:
                areas = _np(areas).astype(np.float64).reshape(-1)
            elif rles is not None:
                areas = rle_area(rles).astype(np.float64)
            elif gt.masks is not None:
                areas = _np(gt.masks).reshape(len(boxes), -1).sum(1).astype(np.float64)
            else:
                areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            return {
                "boxes": boxes,
                "labels": _np(gt.labels).astype(np.int64).reshape(-1),
                "iscrowd": _np(gt.iscrowd).astype(bool).reshape(-1) if gt.iscrowd is not None else np.zeros(len(boxes)),
                "areas": areas,
                "rles": rles,
            }

        # ------------------------------------------------------------------ results -> json
        def _build_gt(self, results: list[dict], cat_ids: list[int]) -> CocoAnnotations:
            names = (self.dataset_meta or {}).get("classes") or [str(c) for c in cat_ids]
            images, anns = [], []
            for r in results:
                h, w = r["ori_shape"]
                images.append({"id": r["img_id"], "height": h, "width": w})
                g = r["gt"]
                for j in range(len(g["labels"])):
                    x1, y1, x2, y2 = g["boxes"][j].tolist()
                    lab = int(g["labels"][j])
                    if not 0 <= lab < len(cat_ids):
                        raise AnnotationError(
                            f"image {r['img_id']}: ground-truth label {lab} outside 0..{len(cat_ids) - 1}"
                        )
                    ann = {
                        "id": len(anns) + 1,
                        "image_id": r["img_id"],
                        "category_id": cat_ids[lab],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": float(g["areas"][j]),
                        "iscrowd": int(bool(g["iscrowd"][j])),
                    }
                    if g["rles"] is not None:
                        ann["segmentation"] = g["rles"][j]
                    anns.append(ann)
            cats = [{"id": c, "name": str(n)} for c, n in zip(cat_ids, names)]
            return self._gt_class(
                {"images": images, "annotations": anns, "categories": cats}, "<dataset ground truth>", degenerate="keep"
            )

        def results_to_json(self, results: list[dict], cat_ids: list[int]) -> dict[str, list[dict]]:
            """Per-image records -> ``{'bbox': [...], 'segm': [...]}`` COCO result lists."""
            out: dict[str, list[dict]] = {"bbox": [], "segm": []}
            for r in results:
                det = Detections(
                    boxes=r["boxes"],
                    scores=r["scores"],
                    labels=r["labels"],
                    masks=r["rles"],
                    mask_scores=r["mask_scores"],
                )
                b, s = detections_to_coco(r["img_id"], det, cat_ids)
                out["bbox"] += b
                out["segm"] += s
            return out

        def _write(self, jsons: dict[str, list[dict]], prefix: str) -> dict[str, str]:
            d = osp.dirname(prefix)
            if d:
                os.makedirs(d, exist_ok=True)
            files = {}
            for m in self.metrics:
                path = f"{prefix}.{m}.json"
                with open(path, "w") as f:
                    json.dump(jsons[m], f)
                files[m] = path
            return files

        def _dedupe(self, results: list[dict]) -> list[dict]:
            seen, out = set(), []
            for r in results:
                if r["img_id"] in seen:
                    continue
                seen.add(r["img_id"])
                out.append(r)
            if len(out) != len(results):
                warnings.warn(
                    f"{type(self).__name__}: {len(results) - len(out)} duplicate image records dropped", stacklevel=2
                )
            return out

        def _round(self, v: float) -> float:
            return float(v) if self.round_digits is None else round(float(v), self.round_digits)

        def _evaluate(self, gt, dets: list[dict], iou_type: str, img_ids: list[int], cat_ids: list[int]) -> dict:
            return evaluate_coco(
                gt, dets, iou_type, img_ids=img_ids, classwise=self.classwise, max_dets=self.max_dets, cat_ids=cat_ids
            )

        _summary_names = COCO_SUMMARY_NAMES

        def compute_metrics(self, results: list) -> dict[str, float]:
            results = self._dedupe(results)
            cat_ids = self._cat_ids()
            jsons = self.results_to_json(results, cat_ids)
            if self.format_only or self.outfile_prefix:
                files = self._write(jsons, self.outfile_prefix)
                print_log(f"results written to {', '.join(files.values())}", logger="current")
                if self.format_only:
                    return {}
            gt = self._gt if self._gt is not None else self._build_gt(results, cat_ids)
            img_ids = [r["img_id"] for r in results]
            out: dict[str, float] = {}
            for m in self.metrics:
                res = self._evaluate(gt, jsons[m], m, img_ids, cat_ids)
                print_log(
                    "\n" + format_coco_table(res, self._summary_names, title=f"{self.default_prefix} {m}"),
                    logger="current",
                )
                for name in self._summary_names:
                    out[f"{m}_{name}"] = self._round(res[name])
                if self.classwise:
                    print_log("\n" + format_classwise_table(res["per_class"]), logger="current")
                    for c in res["per_class"]:
                        out[f"{m}_{c['name']}_precision"] = self._round(c["AP"])
            return out

    CocoMetric.__module__ = __name__
    CocoMetric.__qualname__ = "CocoMetric"
    return CocoMetric


def __getattr__(name: str) -> Any:
    if name == "CocoMetric":
        cls = _define_coco_metric()
        globals()["CocoMetric"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
