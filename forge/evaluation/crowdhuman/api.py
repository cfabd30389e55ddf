"""CrowdHuman evaluation entry points: :func:`evaluate`, :func:`evaluate_files`, :func:`format_table`.

Pure Python + numpy (+ scipy): nothing here imports torch or mmengine. Rules in :mod:`forge.evaluation.crowdhuman`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from forge.data.crowdhuman_reader import DTRecord, GTRecord, read_detections, read_gt_odgt
from forge.evaluation.crowdhuman.apmr import ap_mr
from forge.evaluation.crowdhuman.ji import JI_SCORE_THRS, joint_index
from forge.evaluation.crowdhuman.matching import Matched
from forge.evaluation.crowdhuman.prepare import Prepared

__all__ = ["evaluate", "evaluate_files", "format_table"]


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
    p = Prepared(gt_records, dt_records, box_type, clip, missing_dt)
    m = Matched(p, float(iou_thr))
    out: dict[str, Any] = {"box_type": box_type}
    res = ap_mr(p, m, float(precision_eps), mr_sampling)
    out.update(AP=res.pop("AP"), **{"MR-2": res.pop("MR-2")}, recall=res.pop("recall"))
    ji = joint_index(p, m, [float(t) for t in ji_score_thrs], matching)
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
