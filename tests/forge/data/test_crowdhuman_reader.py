"""CrowdHuman odgt / COCO-result readers: parsing, ignore flags and errors that name file, line and key."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from forge.data.crowdhuman_reader import (
    CrowdHumanFormatError,
    read_coco_results,
    read_detections,
    read_dt_odgt,
    read_gt_odgt,
    read_id_map,
    xywh_to_xyxy,
)


def _write_lines(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def _gt_line(ID="a", boxes=None, **kw):
    if boxes is None:
        boxes = [
            {
                "tag": "person",
                "fbox": [10, 20, 30, 60],
                "vbox": [12, 20, 20, 40],
                "hbox": [20, 20, 10, 10],
                "extra": {"ignore": 0},
                "head_attr": {"ignore": 0},
            },
            {
                "tag": "mask",
                "fbox": [100, 0, 80, 80],
                "vbox": [100, 0, 80, 80],
                "hbox": [100, 0, 80, 80],
                "extra": {"ignore": 1},
            },
            {"tag": "person", "fbox": [0, 0, 5, 5], "vbox": [0, 0, 5, 5], "hbox": [0, 0, 2, 2], "extra": {"ignore": 1}},
            {
                "tag": "person",
                "fbox": [50, 50, 10, 20],
                "vbox": [50, 50, 10, 20],
                "hbox": [52, 50, 5, 5],
                "head_attr": {"ignore": 1},
            },
        ]
    return {"ID": ID, "gtboxes": boxes, **kw}


def test_read_gt_fields_and_ignore_rules(tmp_path):
    p = _write_lines(tmp_path / "gt.odgt", [_gt_line("a", width=640, height=480), _gt_line("b", boxes=[])])
    recs = read_gt_odgt(p)
    assert [r.ID for r in recs] == ["a", "b"]
    a, b = recs
    np.testing.assert_array_equal(a.fbox[0], [10, 20, 30, 60])  # kept xywh, as in the file
    assert a.fbox.dtype == np.float64 and a.vbox.shape == (4, 4) and a.hbox.shape == (4, 4)
    assert a.tags == ["person", "mask", "person", "person"]
    # ignore = tag != person or extra.ignore != 0; head boxes also honour head_attr.ignore
    np.testing.assert_array_equal(a.ignore, [False, True, True, False])
    np.testing.assert_array_equal(a.head_ignore, [False, True, True, True])
    np.testing.assert_array_equal(a.ignore_flags("hbox"), a.head_ignore)
    np.testing.assert_array_equal(a.ignore_flags("vbox"), a.ignore)
    assert (a.width, a.height) == (640, 480) and b.width is None
    assert len(b) == 0 and b.fbox.shape == (0, 4)
    assert a.line == 1 and b.line == 2 and a.source == str(p)


def test_missing_box_key_is_nan_row(tmp_path):
    line = _gt_line(
        "a",
        boxes=[{"tag": "person", "fbox": [1, 2, 3, 4]}, {"tag": "person", "fbox": [1, 1, 1, 1], "vbox": [1, 1, 1, 1]}],
    )
    rec = read_gt_odgt(_write_lines(tmp_path / "gt.odgt", [line]))[0]
    assert np.isnan(rec.vbox[0]).all() and not np.isnan(rec.vbox[1]).any()
    assert np.isnan(rec.hbox).all()


def test_xywh_to_xyxy():
    out = xywh_to_xyxy(np.array([[1.5, 2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(out, [[1.5, 2.0, 4.5, 6.0]])


@pytest.mark.parametrize(
    "line, match",
    [
        ("{not json", r"gt\.odgt:2: invalid JSON"),
        ('["a"]', r"gt\.odgt:2: each line must be a JSON object"),
        ({"gtboxes": []}, r"gt\.odgt:2: missing key 'ID'"),
        ({"ID": 5, "gtboxes": []}, r"gt\.odgt:2: key 'ID' must be a non-empty string"),
        ({"ID": "b"}, r"gt\.odgt:2: missing key 'gtboxes'"),
        ({"ID": "b", "gtboxes": {}}, r"gt\.odgt:2: key 'gtboxes' must be a list"),
        ({"ID": "b", "gtboxes": [{"fbox": [1, 2, 3, 4]}]}, r"gt\.odgt:2: missing key 'gtboxes\[0\]\.tag'"),
        ({"ID": "b", "gtboxes": [{"tag": 1, "fbox": [1, 2, 3, 4]}]}, r"'gtboxes\[0\]\.tag' must be a string"),
        ({"ID": "b", "gtboxes": [{"tag": "person"}]}, r"gt\.odgt:2: key 'gtboxes\[0\]' has none of"),
        (
            {"ID": "b", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4]}, {"tag": "person", "fbox": [1, 2, 3]}]},
            r"gt\.odgt:2: key 'gtboxes\[1\]\.fbox' must be a list of 4 numbers",
        ),
        ({"ID": "b", "gtboxes": [{"tag": "person", "fbox": [1, "2", 3, 4]}]}, r"'gtboxes\[0\]\.fbox'"),
        (
            {"ID": "b", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4], "extra": {"ignore": "yes"}}]},
            r"gt\.odgt:2: key gtboxes\[0\]\.extra\.ignore must be a number",
        ),
        (
            {"ID": "b", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4], "extra": [1]}]},
            r"gt\.odgt:2: key gtboxes\[0\]\.'extra' must be an object",
        ),
        ({"ID": "a", "gtboxes": []}, r"gt\.odgt:2: duplicate ID 'a' \(first on line 1\)"),
        ({"ID": "b", "gtboxes": [], "width": -3}, r"gt\.odgt:2: key 'width' must be a positive number"),
    ],
)
def test_gt_errors_name_file_line_key(tmp_path, line, match):
    p = _write_lines(tmp_path / "gt.odgt", [_gt_line("a"), line])
    with pytest.raises(CrowdHumanFormatError, match=match):
        read_gt_odgt(p)


def test_gt_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.odgt"):
        read_gt_odgt(tmp_path / "nope.odgt")


def test_read_dt_odgt(tmp_path):
    lines = [
        {
            "ID": "a",
            "height": 480,
            "width": 640,
            "dtboxes": [{"box": [1, 2, 3, 4], "score": 0.5, "tag": 1}, {"box": [5.5, 6, 7, 8], "score": 1}],
            "gtboxes": [{"box": [0, 0, 1, 1], "tag": 1}],
        },  # CrowdDet embeds GT here: ignored
        {"ID": "b", "dtboxes": []},
    ]
    recs = read_dt_odgt(_write_lines(tmp_path / "dt.odgt", lines))
    a, b = recs
    np.testing.assert_array_equal(a.boxes, [[1, 2, 3, 4], [5.5, 6, 7, 8]])
    np.testing.assert_array_equal(a.scores, [0.5, 1.0])
    assert a.scores.dtype == np.float64 and (a.width, a.height) == (640, 480)
    assert b.boxes.shape == (0, 4) and b.scores.shape == (0,) and b.width is None


@pytest.mark.parametrize(
    "line, match",
    [
        ({"ID": "b"}, r"dt\.odgt:2: missing key 'dtboxes'"),
        ({"ID": "b", "dtboxes": [{"box": [1, 2, 3, 4]}]}, r"dt\.odgt:2: missing key 'dtboxes\[0\]\.score'"),
        ({"ID": "b", "dtboxes": [{"score": 0.1}]}, r"dt\.odgt:2: missing key 'dtboxes\[0\]\.box'"),
        (
            {"ID": "b", "dtboxes": [{"box": [1, 2, 3, 4], "score": 0.1}, {"box": [1, 2, 3, 4], "score": "x"}]},
            r"dt\.odgt:2: key 'dtboxes\[1\]\.score' must be a finite number",
        ),
        ('{"ID": "b", "dtboxes": [{"box": [1, 2, 3, 4], "score": NaN}]}', r"'dtboxes\[0\]\.score' must be a finite"),
        ({"ID": "b", "dtboxes": [{"box": [1, 2, 3, 4], "score": True}]}, r"'dtboxes\[0\]\.score' must be a finite"),
        ({"ID": "b", "dtboxes": [{"box": [1, 2, None, 4], "score": 0.3}]}, r"'dtboxes\[0\]\.box' must be a list"),
        ({"ID": "b", "dtboxes": ["x"]}, r"dt\.odgt:2: key 'dtboxes\[0\]' must be an object"),
        ({"ID": "a", "dtboxes": []}, r"dt\.odgt:2: duplicate ID 'a'"),
    ],
)
def test_dt_errors_name_file_line_key(tmp_path, line, match):
    p = _write_lines(tmp_path / "dt.odgt", [{"ID": "a", "dtboxes": []}, line])
    with pytest.raises(CrowdHumanFormatError, match=match):
        read_dt_odgt(p)


def test_read_coco_results_with_and_without_id_map(tmp_path):
    res = [
        {"image_id": 7, "bbox": [1, 2, 3, 4], "score": 0.9, "category_id": 1},
        {"image_id": 8, "bbox": [5, 6, 7, 8], "score": 0.8, "category_id": 1},
        {"image_id": 7, "bbox": [9, 9, 9, 9], "score": 0.7, "category_id": 2},
    ]
    p = tmp_path / "res.json"
    p.write_text(json.dumps(res))
    recs = read_coco_results(p, id_map={7: "img7", "8": "img8"})  # int keys and json-style string keys
    assert [r.ID for r in recs] == ["img7", "img8"]
    np.testing.assert_array_equal(recs[0].boxes, [[1, 2, 3, 4], [9, 9, 9, 9]])
    recs = read_coco_results(p, id_map={7: "img7", 8: "img8"}, category_ids={1})
    assert [len(r) for r in recs] == [1, 1]
    # a COCO annotation file as the map also gives the image size
    coco = tmp_path / "ann.json"
    coco.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 7, "file_name": "dir/img7.jpg", "width": 640, "height": 480},
                    {"id": 8, "file_name": "img8.png"},
                ]
            }
        )
    )
    assert read_id_map(coco)[7] == {"ID": "img7", "width": 640, "height": 480}
    recs = read_detections(p, id_map=coco)
    assert [(r.ID, r.width, r.height) for r in recs] == [("img7", 640, 480), ("img8", None, None)]
    # string image ids need no map
    p2 = tmp_path / "res2.json"
    p2.write_text(json.dumps([{"image_id": "x,1", "bbox": [0, 0, 1, 1], "score": 0.1}]))
    assert read_detections(p2)[0].ID == "x,1"


@pytest.mark.parametrize(
    "content, id_map, match",
    [
        ({"a": 1}, None, r"res\.json: a COCO result file must hold a json list"),
        ([{"image_id": 1, "bbox": [0, 0, 1, 1]}], {1: "a"}, r"res\.json: missing key '\[0\]\.score'"),
        ([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.1}], None, r"'\[0\]\.image_id' = 1: no id_map given"),
        ([{"image_id": 2, "bbox": [0, 0, 1, 1], "score": 0.1}], {1: "a"}, r"'\[0\]\.image_id' = 2: not in the id_map"),
        (
            [{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.1}, {"image_id": 1, "bbox": [0, 0, 1], "score": 0.1}],
            {1: "a"},
            r"res\.json: key '\[1\]\.bbox' must be a list of 4 numbers",
        ),
    ],
)
def test_coco_result_errors(tmp_path, content, id_map, match):
    p = tmp_path / "res.json"
    p.write_text(json.dumps(content))
    with pytest.raises(CrowdHumanFormatError, match=match):
        read_coco_results(p, id_map=id_map)


def test_read_detections_dispatch(tmp_path):
    odgt = _write_lines(tmp_path / "dt.odgt", [{"ID": "a", "dtboxes": [{"box": [0, 0, 1, 1], "score": 0.5}]}])
    assert read_detections(odgt)[0].ID == "a"
    coco = tmp_path / "dt.json"
    coco.write_text("  \n[" + json.dumps({"image_id": "a", "bbox": [0, 0, 1, 1], "score": 0.5}) + "]")
    assert read_detections(coco)[0].ID == "a"
    with pytest.raises(FileNotFoundError):
        read_detections(tmp_path / "missing.json")
    assert math.isclose(read_detections(coco)[0].scores[0], 0.5)


def test_non_utf8_files_name_the_file_and_line(tmp_path):
    good = json.dumps(_gt_line("a"))
    bad = json.dumps(_gt_line("Jos\u00e9", boxes=[]), ensure_ascii=False).encode("latin-1")
    odgt = tmp_path / "gt.odgt"
    odgt.write_bytes(good.encode() + b"\n" + bad + b"\n")
    with pytest.raises(CrowdHumanFormatError, match=r"gt\.odgt:2: not UTF-8 text \(byte 0xe9\)"):
        read_gt_odgt(odgt)
    dt = tmp_path / "dt.odgt"
    dt.write_bytes(json.dumps({"ID": "Jos\u00e9", "dtboxes": []}, ensure_ascii=False).encode("latin-1") + b"\n")
    with pytest.raises(CrowdHumanFormatError, match=r"dt\.odgt:1: not UTF-8"):
        read_detections(dt)
    coco = tmp_path / "dt.json"
    row = json.dumps({"image_id": "Jos\u00e9", "bbox": [0, 0, 1, 1], "score": 0.5}, ensure_ascii=False)
    coco.write_bytes(b"[" + row.encode("latin-1") + b"]")
    with pytest.raises(CrowdHumanFormatError, match=r"dt\.json: not UTF-8"):
        read_detections(coco)
    ids = tmp_path / "ids.json"
    ids.write_bytes(json.dumps({"1": "Jos\u00e9"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(CrowdHumanFormatError, match=r"ids\.json: not UTF-8"):
        read_id_map(ids)
