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

Modules, one job each (all but ``metric`` are pure numpy / scipy and never import torch or mmengine):
:mod:`.prepare` (records -> arrays, clipping), :mod:`.matching` (Caltech matching, ignore tests, JI graph),
:mod:`.apmr` (AP / recall / MR^-2), :mod:`.ji` (JI), :mod:`.api` (:func:`evaluate`, :func:`evaluate_files`,
:func:`format_table`) and :mod:`.metric` (:class:`CrowdHumanMetric`, mmengine; imported on first access here).
"""

from __future__ import annotations

import importlib
from typing import Any

from forge.evaluation.crowdhuman.api import evaluate, evaluate_files, format_table
from forge.evaluation.crowdhuman.apmr import MR_REFS
from forge.evaluation.crowdhuman.ji import JI_SCORE_THRS

__all__ = [
    "MR_REFS",
    "JI_SCORE_THRS",
    "evaluate",
    "evaluate_files",
    "format_table",
    "CrowdHumanMetric",  # noqa: F822 (imported on first access, see __getattr__)
]


def __getattr__(name: str) -> Any:
    if name == "CrowdHumanMetric":  # mmengine (and torch) only when the metric is used
        return importlib.import_module("forge.evaluation.crowdhuman.metric").CrowdHumanMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
