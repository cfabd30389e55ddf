"""CrowdHuman evaluation, step 1: records -> flat, image-contiguous numpy arrays, and the array helpers.

Box prep and validation follow CrowdDet (see :mod:`forge.evaluation.crowdhuman`): ``x2 = x + w``, ``y2 = y + h``,
detections and GT clipped to the image, GT split into non-ignored boxes and ignore regions. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from forge.data.crowdhuman_reader import BOX_TYPES, DTRecord, GTRecord
from forge.evaluation.errors import EvalInputError

__all__ = [
    "CHUNK_ELEMS",
    "EPS",
    "Prepared",
    "box_area",
    "box_area_clamped",
    "clip_boxes",
    "concat_ranges",
    "image_chunks",
    "intersections",
    "offsets",
    "pad_boxes",
]

EPS = 1e-6
CHUNK_ELEMS = 1 << 20  # padded (images x dets x gts) elements per chunk; bounds memory to a few tens of MB


def _resolve_size(gt: GTRecord, dt: DTRecord | None) -> tuple[float | None, float | None]:
    w = gt.width if gt.width is not None else (None if dt is None else dt.width)
    h = gt.height if gt.height is not None else (None if dt is None else dt.height)
    return w, h


def clip_boxes(boxes: np.ndarray, w: np.ndarray, h: np.ndarray) -> None:
    """In place, CrowdDet's clip: x1 to [0, W-1], y1 to [0, H-1], x2 to [0, W], y2 to [0, H]."""
    boxes[:, 0] = np.minimum(np.maximum(boxes[:, 0], 0), w - 1)
    boxes[:, 1] = np.minimum(np.maximum(boxes[:, 1], 0), h - 1)
    boxes[:, 2] = np.maximum(np.minimum(boxes[:, 2], w), 0)
    boxes[:, 3] = np.maximum(np.minimum(boxes[:, 3], h), 0)


class Prepared:
    """Flat, image-contiguous arrays (dets sorted by score within each image; non-ignored and ignored GT apart).

    Attributes (``N`` images, ``D`` detections, ``G`` non-ignored GT, ``I`` ignore regions; boxes xyxy float64):
        ``dt_boxes (D, 4)``, ``dt_score (D,)``, ``dt_img (D,)``, ``n_dt (N,)``, ``dt_file_rank (D,)`` (position in
        the image's detection list); ``gtn_boxes (G, 4)``, ``gtn_img``, ``n_gtn``; ``gti_boxes (I, 4)``,
        ``gti_img``, ``n_gti``; ``n_images``, ``ids``.

    Raises:
        EvalInputError: duplicate or unknown IDs, a GT box without ``box_type``, unknown image size (with clipping).
    """

    def __init__(
        self,
        gt_records: Sequence[GTRecord],
        dt_records: Iterable[DTRecord],
        box_type: str,
        clip: bool,
        missing_dt: str,
    ) -> None:
        if box_type not in BOX_TYPES:
            raise ValueError(f"box_type must be one of {BOX_TYPES}, got {box_type!r}")
        if missing_dt not in ("empty", "error"):
            raise ValueError(f"missing_dt must be 'empty' or 'error', got {missing_dt!r}")
        gt_records = list(gt_records)
        index: dict[str, int] = {}
        for i, g in enumerate(gt_records):
            if g.ID in index:
                raise EvalInputError(f"duplicate ground-truth ID {g.ID!r} ({g.source}:{g.line})")
            index[g.ID] = i
        n = len(gt_records)
        dts: list[DTRecord | None] = [None] * n
        for d in dt_records:
            i = index.get(d.ID)
            if i is None:
                raise EvalInputError(f"detections for ID {d.ID!r} ({d.source}:{d.line}) not in the ground truth")
            if dts[i] is not None:
                raise EvalInputError(f"duplicate detection record for ID {d.ID!r} ({d.source}:{d.line})")
            dts[i] = d
        if missing_dt == "error":
            missing = [gt_records[i].ID for i in range(n) if dts[i] is None]
            if missing:
                raise EvalInputError(
                    f"{len(missing)} images of {gt_records[0].source} have no detection record (missing_dt='error'), "
                    f"e.g. {missing[:3]}"
                )

        gt_boxes, gt_ign, dt_boxes, dt_scores = [], [], [], []
        n_dt = np.zeros(n, dtype=np.int64)
        n_gt = np.zeros(n, dtype=np.int64)
        width = np.full(n, np.nan)
        height = np.full(n, np.nan)
        for i, g in enumerate(gt_records):
            b = g.boxes(box_type)
            if b.size and np.isnan(b).any():
                j = int(np.isnan(b).any(axis=1).argmax())
                raise EvalInputError(f"{g.source}:{g.line}: ID {g.ID!r} gtboxes[{j}] has no {box_type!r}")
            gt_boxes.append(b)
            gt_ign.append(g.ignore_flags(box_type))
            n_gt[i] = b.shape[0]
            d = dts[i]
            if d is not None:
                if d.boxes.reshape(-1, 4).shape[0] != d.scores.shape[0]:
                    raise EvalInputError(
                        f"ID {d.ID!r} ({d.source}:{d.line}): {d.boxes.shape} boxes for {d.scores.shape} scores"
                    )
                dt_boxes.append(d.boxes)
                dt_scores.append(d.scores)
                n_dt[i] = d.scores.shape[0]
            w, h = _resolve_size(g, d)
            if clip and (w is None or h is None) and n_dt[i] > 0:
                raise EvalInputError(
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
                clip_boxes(sub, width[im[rows]], height[im[rows]])
                b[rows] = sub

        # dets: image-contiguous, descending score within the image, stable (file order among equal scores)
        order = np.lexsort((np.arange(score.shape[0]), -score, dt_img))
        self.dt_boxes = dtb[order]
        self.dt_score = score[order]
        self.dt_img = dt_img[order]
        self.n_dt = n_dt
        self.dt_file_rank = order - offsets(n_dt)[self.dt_img]  # position in the image's detection list
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


def offsets(counts: np.ndarray) -> np.ndarray:
    s = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=s[1:])
    return s


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + counts[i])``."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return offs + np.arange(total)


def pad_boxes(boxes: np.ndarray, img: np.ndarray, starts: np.ndarray, local: np.ndarray, imgs: np.ndarray, k: int):
    """Scatter the boxes of images ``imgs`` into ``(len(imgs), k, 4)``.

    Returns ``(padded, valid (C, k), rows, chunk_index, rank)``: ``rows`` index the flat arrays and land at
    ``padded[chunk_index, rank]``.
    """
    c = imgs.shape[0]
    out = np.zeros((c, k, 4))
    valid = np.zeros((c, k), dtype=bool)
    rows = concat_ranges(starts[imgs], starts[imgs + 1] - starts[imgs])
    li = local[img[rows]]
    rank = rows - starts[img[rows]]
    out[li, rank] = boxes[rows]
    valid[li, rank] = True
    return out, valid, rows, li, rank


def intersections(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Intersection areas ``(C, D, G)`` of ``d (C, D, 4)`` and ``g (C, G, 4)`` xyxy (CrowdDet's arithmetic)."""
    dx1, dy1, dx2, dy2 = (d[:, :, None, i] for i in range(4))
    gx1, gy1, gx2, gy2 = (g[:, None, :, i] for i in range(4))
    iw = np.minimum(dx2, gx2) - np.maximum(dx1, gx1)
    ih = np.minimum(dy2, gy2) - np.maximum(dy1, gy1)
    inter = np.maximum(0, iw) * np.maximum(0, ih)
    return inter


def box_area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_area_clamped(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def image_chunks(p: Prepared) -> Iterable[np.ndarray]:
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
            if (end - start + 1) * d2 * g2 > CHUNK_ELEMS:
                break
            dmax, gmax = d2, g2
            end += 1
        yield order[start:end]
        start = end
