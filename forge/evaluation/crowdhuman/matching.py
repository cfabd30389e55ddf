"""CrowdHuman evaluation, step 2: per-image matching, vectorised over chunks of images of similar size.

Caltech greedy matching at ``iou_thr`` (AP / MR), the ignore-region tests (IoA) of both evaluations, and the edges
``IoU > iou_thr`` of the JI graph. Rules in :mod:`forge.evaluation.crowdhuman`. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from forge.evaluation.crowdhuman.prepare import (
    EPS,
    Prepared,
    box_area,
    box_area_clamped,
    image_chunks,
    intersections,
    offsets,
    pad_boxes,
)
from forge.progress import Progress

__all__ = ["Matched"]


class Matched:
    """Per-detection / per-GT match flags and the JI graph of a :class:`Prepared` case.

    Attributes: ``tp (D,)`` Caltech true positives; ``dt_in_ign_apmr (D,)`` / ``dt_in_ign_ji (D,)`` IoA with an
    ignore region ``> iou_thr`` (unclamped / clamped area); ``gt_in_ign_ji (G,)``; JI edges ``e_dt, e_gt, e_w``
    (``IoU > iou_thr``), sorted by detection then GT.
    """

    def __init__(self, p: Prepared, iou_thr: float) -> None:
        nd, ng = p.dt_score.shape[0], p.gtn_img.shape[0]
        self.tp = np.zeros(nd, dtype=bool)  # Caltech true positive
        self.dt_in_ign_apmr = np.zeros(nd, dtype=bool)  # IoA (unclamped area) with an ignore region > thr
        self.dt_in_ign_ji = np.zeros(nd, dtype=bool)  # IoA (clamped area) with an ignore region > thr
        self.gt_in_ign_ji = np.zeros(ng, dtype=bool)
        e_dt, e_gt, e_w = [], [], []
        dstart, gstart, istart = offsets(p.n_dt), offsets(p.n_gtn), offsets(p.n_gti)
        local = np.zeros(p.n_images, dtype=np.int64)
        bar = Progress(total=p.n_images, desc="crowdhuman matching", unit="img")
        for imgs in image_chunks(p):
            bar.update(int(imgs.shape[0]))
            c = imgs.shape[0]
            local[imgs] = np.arange(c)
            D = int(p.n_dt[imgs].max())
            G = int(p.n_gtn[imgs].max())
            K = int(p.n_gti[imgs].max())
            if D == 0:
                if G and K:
                    self._gt_ignores(p, imgs, local, gstart, istart, G, K, iou_thr)
                continue
            d, dv, drows, dli, drank = pad_boxes(p.dt_boxes, p.dt_img, dstart, local, imgs, D)
            if G:
                g, gv, grows, _, _ = pad_boxes(p.gtn_boxes, p.gtn_img, gstart, local, imgs, G)
                inter = intersections(d, g)
                iou = inter / (box_area(d)[:, :, None] + box_area(g)[:, None, :] - inter + EPS)
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
                ig, iv, _, _, _ = pad_boxes(p.gti_boxes, p.gti_img, istart, local, imgs, K)
                inter = intersections(d, ig)
                mask = dv[:, :, None] & iv[:, None, :]
                ioa_a = inter / (box_area(d)[:, :, None] + EPS)
                ioa_j = inter / (box_area_clamped(d)[:, :, None] + EPS)
                self.dt_in_ign_apmr[drows] = ((ioa_a > iou_thr) & mask).any(axis=2)[dli, drank]
                self.dt_in_ign_ji[drows] = ((ioa_j > iou_thr) & mask).any(axis=2)[dli, drank]
                if G:
                    self._gt_ignores(p, imgs, local, gstart, istart, G, K, iou_thr)
        bar.close()
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
        g, gv, grows, gli, grank = pad_boxes(p.gtn_boxes, p.gtn_img, gstart, local, imgs, G)
        ig, iv, _, _, _ = pad_boxes(p.gti_boxes, p.gti_img, istart, local, imgs, K)
        inter = intersections(g, ig)
        ioa = inter / (box_area_clamped(g)[:, :, None] + EPS)
        hit = ((ioa > iou_thr) & gv[:, :, None] & iv[:, None, :]).any(axis=2)
        self.gt_in_ign_ji[grows] = hit[gli, grank]
