"""CrowdHuman AP / MR^-2 / JI: hand-built cases with known answers and golden numbers from CrowdDet's scripts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import forge.evaluation.crowdhuman.prepare as ch_prepare
from forge.data.crowdhuman_reader import DTRecord, GTRecord, read_dt_odgt, read_gt_odgt
from forge.data.structures import Detections, DetSample, ImageMeta
from forge.evaluation.crowdhuman import CrowdHumanMetric, evaluate, evaluate_files, format_table
from forge.evaluation.errors import EvalInputError

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "crowdhuman"
EPS = 1e-6  # CrowdDet's JI denominator epsilon


def gt(ID, boxes, ignore=None, w=1000, h=1000):
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    ign = np.zeros(len(b), dtype=bool) if ignore is None else np.array(ignore, dtype=bool)
    tags = ["mask" if i else "person" for i in ign]
    return GTRecord(
        ID=ID, fbox=b, vbox=b.copy(), hbox=b.copy(), tags=tags, ignore=ign, head_ignore=ign.copy(), width=w, height=h
    )


def dt(ID, boxes, scores, w=None, h=None):
    return DTRecord(
        ID=ID,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        scores=np.array(scores, dtype=np.float64),
        width=w,
        height=h,
    )


PEOPLE = [[10, 10, 40, 100], [100, 10, 40, 100], [200, 10, 40, 100], [300, 10, 40, 100]]


# ------------------------------------------------------------------------------------------------ hand-built cases


def test_perfect_detections():
    gts = [gt("a", PEOPLE), gt("b", PEOPLE[:2])]
    dts = [dt("a", PEOPLE, [0.9, 0.8, 0.7, 0.6]), dt("b", PEOPLE[:2], [0.95, 0.5])]
    r = evaluate(gts, dts)
    # CrowdDet integrates from the first detection (no point at recall 0): 1 - 1/#GT, not 1
    assert r["AP"] == pytest.approx(1 - 1 / 6, abs=1e-12)
    assert r["recall"] == 1.0 and r["MR-2"] == 0.0
    assert r["JI"] == pytest.approx((4 / (4 + EPS) + 2 / (2 + EPS)) / 2, abs=1e-12)
    assert r["JI"] == pytest.approx(1.0, abs=1e-6)
    assert (r["num_images"], r["num_gt"], r["num_dt"], r["num_tp"], r["num_fp"]) == (2, 6, 6, 6, 0)


def test_one_miss():
    r = evaluate([gt("a", PEOPLE)], [dt("a", PEOPLE[:3], [0.9, 0.8, 0.7])])
    assert r["recall"] == 0.75
    assert r["AP"] == pytest.approx(0.5, abs=1e-12)  # (3 - 1) / 4
    assert r["MR-2"] == pytest.approx(0.25, abs=1e-12)  # no FP: the final miss rate at every FPPI point
    assert r["JI"] == pytest.approx(3 / (4 + 3 - 3 + EPS), abs=1e-12)


@pytest.mark.parametrize(
    "fp_score, ap, mr, mr_noh", [(0.99, 0.125 + 0.5 * (0.5 + 2 / 3) / 2, 1.0, 0.0), (0.01, 0.5, 0.0, 0.0)]
)
def test_one_false_positive(fp_score, ap, mr, mr_noh):
    gts = [gt("a", PEOPLE[:2])]
    dts = [dt("a", PEOPLE[:2] + [[600, 600, 50, 100]], [0.9, 0.8, fp_score])]
    r = evaluate(gts, dts)
    assert r["AP"] == pytest.approx(ap, abs=1e-12)
    # FPPI = 1 from the FP on: CrowdDet samples the first index with FPPI >= ref (the FP itself when it comes
    # first: miss rate 1); NOH-NMS takes the last index with FPPI <= ref (none: wraps to the last point, miss 0)
    assert r["MR-2"] == mr
    assert evaluate(gts, dts, mr_sampling="noh")["MR-2"] == mr_noh
    assert r["num_fp"] == 1 and r["recall"] == 1.0
    assert r["JI@0.0"] == pytest.approx(2 / (2 + 3 - 2 + EPS), abs=1e-12)


def test_precision_eps_option():
    gts = [gt("a", PEOPLE[:2])]
    dts = [dt("a", PEOPLE[:2] + [[600, 600, 50, 100]], [0.9, 0.8, 0.01])]
    e = 1e-3
    p = [1 / (1 + e), 2 / (2 + e), 2 / (3 + e)]
    assert evaluate(gts, dts, precision_eps=e)["AP"] == pytest.approx(0.5 * (p[0] + p[1]) / 2, abs=1e-12)


def test_ignore_regions_absorb_detections():
    region = [500, 500, 200, 200]
    gts = [gt("a", [PEOPLE[0], region, [800, 10, 50, 100]], ignore=[False, True, True])]
    dets = [
        PEOPLE[0],  # TP
        [510, 510, 50, 120],
        [600, 550, 60, 100],
        [520, 600, 100, 90],  # inside the region (IoA 1): discarded
        [650, 500, 100, 100],  # half inside (IoA 0.5, not > 0.5): FP
        [805, 15, 40, 90],  # inside the extra.ignore person box: discarded
    ]
    r = evaluate(gts, [dt("a", dets, [0.5, 0.99, 0.98, 0.97, 0.96, 0.95])])
    assert (r["num_gt"], r["num_ignore"], r["num_tp"], r["num_fp"], r["num_dt_ignored"]) == (1, 2, 1, 1, 4)
    assert r["recall"] == 1.0
    # pooled: FP (0.96; r 0, p 0), TP (0.5; r 1, p 1/2) -> trapezoid (1 - 0) * (0 + 1/2) / 2
    assert r["AP"] == 0.25
    assert r["JI"] == pytest.approx(1 / (1 + 2 - 1 + EPS), abs=1e-12)  # n = 6 - 4 absorbed


def test_ignore_region_absorbs_in_ap():
    region = [500, 500, 200, 200]
    gts = [gt("a", [PEOPLE[0], region], ignore=[False, True])]
    dts = [dt("a", [PEOPLE[0], [510, 510, 50, 120], [650, 500, 100, 100]], [0.9, 0.99, 0.5])]
    r = evaluate(gts, dts)
    # the absorbed detection does not count; left: TP (0.9), FP (0.5): p = [1, 1/2], r = [1, 1] -> AP 0
    assert r["num_dt_ignored"] == 1 and r["num_fp"] == 1
    assert r["AP"] == 0.0 and r["recall"] == 1.0


def test_matched_gt_beats_ignore_region():
    gts = [gt("a", [[100, 100, 50, 100], [90, 90, 80, 130]], ignore=[False, True])]
    r = evaluate(gts, [dt("a", [[101, 101, 50, 100]], [0.9])])
    assert r["num_tp"] == 1 and r["num_dt_ignored"] == 0


def test_caltech_greedy_vs_ji_max_weight_matching():
    # x-intervals (h = 100): g1 [10, 20], g2 [14, 24]; A [11, 21] (IoU .818 / .538), B [8, 18] (IoU .667 / .25)
    gts = [gt("a", [[10, 0, 10, 100], [14, 0, 10, 100]])]
    dts = [dt("a", [[11, 0, 10, 100], [8, 0, 10, 100]], [0.9, 0.8])]
    r = evaluate(gts, dts)
    assert (r["num_tp"], r["num_fp"]) == (1, 1)  # greedy: A takes g1, B finds nothing
    assert r["JI@0.0"] == pytest.approx(2 / (2 + EPS), abs=1e-12)  # max weight: A-g2 + B-g1
    assert evaluate(gts, dts, matching="hungarian")["JI@0.0"] == r["JI@0.0"]


def test_caltech_takes_best_free_gt_first_on_ties():
    # the detection has the same IoU with both GT; the first in file order is matched, the second stays free
    gts = [gt("a", [[10, 0, 10, 100], [14, 0, 10, 100]])]
    dts = [dt("a", [[12, 0, 10, 100], [14, 0, 10, 100]], [0.9, 0.8])]
    assert evaluate(gts, dts)["num_tp"] == 2


def test_ji_score_thresholds_follow_crowddet_floats():
    gts = [gt("a", [PEOPLE[0]]), gt("b", [PEOPLE[0]])]
    r = evaluate(gts, [dt("a", [PEOPLE[0]], [0.3]), dt("b", [PEOPLE[0]], [0.5])])
    one = 1 / (1 + EPS)
    assert r["JI@0.2"] == pytest.approx(one, abs=1e-12)
    assert r["JI@0.3"] == pytest.approx(one / 2, abs=1e-12)  # 0.3 > 0.1 * 3 = 0.30000000000000004 is False
    assert r["JI@0.5"] == 0.0  # 0.5 > 0.5 is False
    assert r["JI"] == pytest.approx(one, abs=1e-12) and r["JI_score_thr"] == 0.0


def test_clipping_of_detections_and_gt():
    # the GT crosses the right border (x2 = 150 -> 100): the detection equals the clipped box
    gts = [gt("a", [[50, 10, 100, 50]], w=100, h=80)]
    dts = [dt("a", [[50, 10, 50, 50]], [0.9])]
    assert evaluate(gts, dts)["num_tp"] == 1
    assert evaluate(gts, dts, clip=False)["num_tp"] == 0  # IoU 0.5 - eps unclipped
    boxes = np.array([[-5.0, -5.0, 150.0, 150.0], [120.0, 130.0, 140.0, 150.0], [-20.0, -20.0, -10.0, -10.0]])
    ch_prepare.clip_boxes(boxes, np.full(3, 100.0), np.full(3, 80.0))
    np.testing.assert_array_equal(boxes, [[0, 0, 100, 80], [99, 79, 100, 80], [0, 0, 0, 0]])


def test_image_size_from_detections_and_errors():
    g = gt("a", [[50, 10, 100, 50]], w=None, h=None)
    assert evaluate([g], [dt("a", [[50, 10, 50, 50]], [0.9], w=100, h=80)])["num_tp"] == 1
    with pytest.raises(EvalInputError, match=r"ID 'a'.*width/height unknown"):
        evaluate([g], [dt("a", [[50, 10, 50, 50]], [0.9])])
    assert evaluate([g], [dt("a", [[50, 10, 50, 50]], [0.9])], clip=False)["num_tp"] == 0
    # an image without detections needs no size
    assert evaluate([g], [])["recall"] == 0.0


def test_empty_and_degenerate_inputs():
    r = evaluate([gt("a", PEOPLE)], [])
    assert (r["AP"], r["recall"], r["MR-2"], r["JI"]) == (0.0, 0.0, 1.0, 0.0)
    r = evaluate([gt("a", [[0, 0, 10, 10]], ignore=[True])], [dt("a", [PEOPLE[0]], [0.5])])
    assert math.isnan(r["AP"]) and math.isnan(r["recall"]) and math.isnan(r["MR-2"])
    # an image without GT: its detections are false positives and it counts in the JI average
    r = evaluate([gt("a", PEOPLE[:1]), gt("b", [])], [dt("a", PEOPLE[:1], [0.9]), dt("b", PEOPLE[:1], [0.8])])
    assert r["num_fp"] == 1 and r["JI@0.0"] == pytest.approx(1 / (1 + EPS) / 2, abs=1e-12)
    r = evaluate([gt("a", [])], [dt("a", [], [])])
    assert math.isnan(r["JI"])


def test_input_errors():
    g = [gt("a", PEOPLE)]
    with pytest.raises(EvalInputError, match="ID 'zz'.*not in the ground truth"):
        evaluate(g, [dt("zz", PEOPLE, [0.1] * 4)])
    with pytest.raises(EvalInputError, match="no detection record"):
        evaluate(g, [], missing_dt="error")
    with pytest.raises(EvalInputError, match="duplicate detection record"):
        evaluate(g, [dt("a", [], []), dt("a", [], [])])
    with pytest.raises(ValueError, match="box_type"):
        evaluate(g, [], box_type="xbox")
    with pytest.raises(ValueError, match="matching"):
        evaluate(g, [], matching="greedy")
    with pytest.raises(ValueError, match="mr_sampling"):
        evaluate(g, [], mr_sampling="x")


def test_missing_box_type_names_the_line(tmp_path):
    p = tmp_path / "gt.odgt"
    p.write_text(json.dumps({"ID": "a", "gtboxes": [{"tag": "person", "fbox": [0, 0, 10, 10]}]}) + "\n")
    d = tmp_path / "dt.odgt"
    d.write_text(json.dumps({"ID": "a", "width": 20, "height": 20, "dtboxes": []}) + "\n")
    assert evaluate_files(p, d)["num_gt"] == 1
    with pytest.raises(EvalInputError, match=r"gt\.odgt:1: ID 'a' gtboxes\[0\] has no 'vbox'"):
        evaluate_files(p, d, box_type="vbox")


def test_head_boxes_use_head_ignore():
    b = np.array([[10, 10, 20, 20], [100, 10, 20, 20]], dtype=np.float64)
    g = GTRecord(
        ID="a",
        fbox=b,
        vbox=b,
        hbox=b,
        tags=["person", "person"],
        ignore=np.array([False, False]),
        head_ignore=np.array([False, True]),
        width=500,
        height=500,
    )
    assert evaluate([g], [], box_type="fbox")["num_gt"] == 2
    assert evaluate([g], [], box_type="hbox")["num_gt"] == 1


def test_small_chunks_give_the_same_numbers(monkeypatch):
    gts, dts = read_gt_odgt(FIX / "gt.odgt"), read_dt_odgt(FIX / "dt_fbox.odgt")
    ref = evaluate(gts, dts)
    monkeypatch.setattr(ch_prepare, "CHUNK_ELEMS", 500)
    assert evaluate(gts, dts) == ref


def test_format_table():
    r = evaluate([gt("a", PEOPLE)], [dt("a", PEOPLE[:3], [0.9, 0.8, 0.7])])
    text = format_table(r)
    assert "AP (%)" in text and "50.00" in text and "75.00" in text and "JI@" not in text and "0.9" in text


# ------------------------------------------------------------------------------------------------ golden (CrowdDet)


def _reference(folder: Path) -> dict:
    return json.loads((folder / "reference.json").read_text())


@pytest.mark.parametrize("box_type", ["fbox", "vbox"])
def test_golden_crowd_case(box_type):
    ref = _reference(FIX)[box_type]
    r = evaluate_files(FIX / "gt.odgt", FIX / f"dt_{box_type}.odgt", box_type)
    for key, value in ref.items():
        assert r[key] == pytest.approx(value, abs=1e-9), key
    assert evaluate_files(FIX / "gt.odgt", FIX / f"dt_{box_type}.odgt", box_type, matching="hungarian")["JI"] == (
        pytest.approx(ref["JI"], abs=1e-9)
    )


def test_golden_ties_case():
    ref = _reference(FIX / "ties")["fbox"]
    r = evaluate_files(FIX / "ties" / "gt.odgt", FIX / "ties" / "dt_fbox.odgt")
    for key, value in ref.items():
        assert r[key] == pytest.approx(value, abs=1e-9), key
    # a different tie-breaking rule changes the JI here, not AP / MR / recall
    h = evaluate_files(FIX / "ties" / "gt.odgt", FIX / "ties" / "dt_fbox.odgt", matching="hungarian")
    for key in ("AP", "MR-2", "recall"):
        assert h[key] == pytest.approx(ref[key], abs=1e-9)


def test_golden_from_coco_style_results(tmp_path):
    ref = _reference(FIX)["fbox"]
    dts = read_dt_odgt(FIX / "dt_fbox.odgt")
    images, results = [], []
    for i, d in enumerate(dts):
        images.append({"id": i + 1, "file_name": f"Images/{d.ID}.jpg", "width": d.width, "height": d.height})
        results += [
            {"image_id": i + 1, "category_id": 1, "bbox": b.tolist(), "score": float(s)}
            for b, s in zip(d.boxes, d.scores)
        ]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images}))
    (tmp_path / "res.json").write_text(json.dumps(results))
    r = evaluate_files(FIX / "gt.odgt", tmp_path / "res.json", id_map=tmp_path / "ann.json", category_ids=[1])
    for key in ("AP", "MR-2", "JI", "recall"):
        assert r[key] == pytest.approx(ref[key], abs=1e-9), key


# ------------------------------------------------------------------------------------------------ mmengine metric


def _samples(records):
    out = []
    for i, d in enumerate(records):
        xyxy = d.boxes.copy()
        xyxy[:, 2:] += xyxy[:, :2]
        pred = Detections(
            boxes=torch.from_numpy(xyxy),
            scores=torch.from_numpy(d.scores),
            labels=torch.zeros(len(d), dtype=torch.long),
        )
        meta = ImageMeta(
            image_id=i, file_name=f"{d.ID}.jpg", ori_shape=(int(d.height), int(d.width)), extra={"ID": d.ID}
        )
        out.append(DetSample(meta=meta, pred=pred))
    return out


def test_metric_matches_golden():
    ref = _reference(FIX)["fbox"]
    samples = _samples(read_dt_odgt(FIX / "dt_fbox.odgt"))
    metric = CrowdHumanMetric(ann_file=str(FIX / "gt.odgt"), log_table=False)
    for k in range(0, len(samples), 8):
        metric.process({}, samples[k : k + 8])
    assert len(metric.results) == len(samples)  # one entry per image
    res = metric.evaluate(len(samples))
    for key in ("AP", "MR-2", "JI", "recall"):
        assert res[f"crowdhuman/{key}"] == pytest.approx(ref[key], abs=1e-9), key
    assert "crowdhuman/JI@0.5" in res


def test_metric_subset_label_filter_and_id_fallback():
    dts = read_dt_odgt(FIX / "dt_fbox.odgt")[:10]
    samples = _samples(dts)
    for s in samples[::2]:
        s.meta.extra = {}  # falls back to the file name without extension
    extra = samples[0].pred
    samples[0].pred = Detections(
        boxes=torch.cat([extra.boxes, torch.tensor([[0.0, 0.0, 50.0, 50.0]], dtype=torch.float64)]),
        scores=torch.cat([extra.scores, torch.tensor([0.99], dtype=torch.float64)]),
        labels=torch.cat([extra.labels, torch.tensor([3])]),
    )
    metric = CrowdHumanMetric(ann_file=str(FIX / "gt.odgt"), label=0, log_table=False, prefix="ch")
    metric.process({}, samples)
    res = metric.evaluate(len(samples))
    gts = [g for g in read_gt_odgt(FIX / "gt.odgt") if g.ID in {d.ID for d in dts}]
    expected = evaluate(gts, dts)
    for key in ("AP", "MR-2", "JI", "recall"):
        assert res[f"ch/{key}"] == pytest.approx(expected[key], abs=1e-9), key
