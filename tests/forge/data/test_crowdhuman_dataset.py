"""CrowdHumanDataset on a small .odgt written here: full/visible boxes, ignore regions, clipping, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from forge.data import coco_dataset
from forge.data import transforms as T
from forge.data.coco_dataset import CorruptImageError
from forge.data.collate import collate_detection
from forge.data.crowdhuman_dataset import CrowdHumanDataError, CrowdHumanDataset


def person(fbox, vbox, tag="person", ignore=0):
    return dict(tag=tag, fbox=fbox, vbox=vbox, hbox=[fbox[0] + 2, fbox[1], 5, 5], extra=dict(ignore=ignore))


@pytest.fixture
def ch_dir(tmp_path):
    images = tmp_path / "Images"
    images.mkdir()
    Image.fromarray(np.zeros((50, 80, 3), np.uint8)).save(images / "273271,abc.jpg")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(images / "284193,def.jpg")
    lines = [
        dict(
            ID="273271,abc",
            width=80,
            height=50,
            gtboxes=[
                person([-5, 10, 20, 45], [0, 10, 15, 20]),  # truncated: fbox clipped
                person([30, 5, 10, 20], [31, 6, 8, 10]),
                person([50, 0, 20, 20], [50, 0, 20, 20], tag="mask"),  # ignore region
                person([60, 20, 10, 20], [61, 21, 5, 5], ignore=1),  # ignored person
            ],
        ),
        dict(ID="284193,def", gtboxes=[person([10, 10, 10, 10], [10, 10, 5, 5])]),  # no width/height
    ]
    ann = tmp_path / "annotation_val.odgt"
    ann.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return tmp_path, lines


def _write(tmp_path, lines, name="bad.odgt"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


def test_reads_full_and_visible_boxes_and_ignore_regions(ch_dir):
    root, _ = ch_dir
    ds = CrowdHumanDataset("annotation_val.odgt", "Images", root=str(root))
    assert len(ds) == 2 and ds.metainfo == dict(classes=["person"], cat_ids=[1]) and ds.num_classes == 1
    item = ds[0]
    assert item["inputs"].shape == (3, 50, 80) and item["inputs"].dtype == torch.uint8
    s = item["data_samples"]
    gt = s.gt
    assert gt.masks is None
    assert gt.boxes.tolist() == [[0, 10, 15, 50], [30, 5, 40, 25], [50, 0, 70, 20], [60, 20, 70, 40]]
    assert gt.labels.tolist() == [0, 0, 0, 0]
    assert gt.iscrowd.tolist() == [False, False, True, True]
    assert gt.ann_ids.tolist() == [1000, 1001, 1002, 1003]
    assert s.meta.extra["ID"] == "273271,abc" and s.meta.extra["line"] == 1 and s.meta.image_id == 0
    assert s.meta.extra["vbox"].tolist()[:2] == [[0, 10, 15, 30], [31, 6, 39, 16]]
    s2 = ds[1]["data_samples"]
    assert s2.meta.ori_shape == (40, 60) and s2.gt.ann_ids.tolist() == [2000]


def test_visible_boxes_follow_the_transforms(ch_dir):
    root, _ = ch_dir
    pipe = [T.RandomMirror(prob=1.0), T.Resize(short_side=100, max_long_side=1000)]
    ds = CrowdHumanDataset(str(root / "annotation_val.odgt"), str(root / "Images"), pipeline=pipe)
    s = ds[0]["data_samples"]
    assert ds[0]["inputs"].shape == (3, 100, 160)
    assert s.gt.boxes[1].tolist() == pytest.approx([80, 10, 100, 50])  # mirror x: 80 - 40 .. 80 - 30, then x2
    assert s.meta.extra["vbox"][1].tolist() == pytest.approx([82, 12, 98, 32])
    assert s.meta.flip is True
    batch = collate_detection([ds[0], ds[1]])
    assert batch["inputs"].shape == (2, 3, 100, 160)


def test_box_type_vbox_and_filter_empty(ch_dir):
    root, lines = ch_dir
    lines[1]["gtboxes"] = [person([10, 10, 10, 10], [10, 10, 5, 5], tag="mask")]
    path = _write(root, lines, "only_ignore.odgt")
    ds = CrowdHumanDataset(path, str(root / "Images"), box_type="vbox", extra_box_types=("fbox",), filter_empty=True)
    assert len(ds) == 1
    s = ds[0]["data_samples"]
    assert s.gt.boxes[0].tolist() == [0, 10, 15, 30] and s.meta.extra["fbox"][0].tolist() == [0, 10, 15, 50]


def test_errors_name_file_line_and_annotation_id(ch_dir, monkeypatch):
    root, lines = ch_dir
    lines[0]["gtboxes"][1]["fbox"] = [100, 5, 10, 20]  # entirely right of the 80 px image
    path = _write(root, lines)
    with pytest.raises(CrowdHumanDataError, match=r"bad\.odgt:1: gtboxes\[1\] \(annotation id 1001.*outside"):
        CrowdHumanDataset(path, str(root / "Images"))
    logged = []
    monkeypatch.setattr(coco_dataset, "_log", lambda msg, level=None: logged.append(msg))
    import forge.data.crowdhuman_dataset as chd

    monkeypatch.setattr(chd, "_log", lambda msg, level=None: logged.append(msg))
    ds = CrowdHumanDataset(path, str(root / "Images"), on_error="skip")
    assert ds[0]["data_samples"].gt.ann_ids.tolist() == [1000, 1002, 1003]
    assert ds.skipped["annotations"] == 1 and any("skipped 1 of 5" in m for m in logged)
    # no width/height in the file: checked when the image is read
    lines = json.loads(json.dumps(lines))
    lines[0]["gtboxes"][1]["fbox"] = [30, 5, 10, 20]
    lines[1]["gtboxes"][0]["fbox"] = [10, 100, 10, 10]
    path = _write(root, lines, "late.odgt")
    with pytest.raises(CrowdHumanDataError, match=r"late\.odgt:2: annotation id 2000"):
        CrowdHumanDataset(path, str(root / "Images"))[1]
    ds = CrowdHumanDataset(path, str(root / "Images"), on_error="skip")
    assert len(ds[1]["data_samples"].gt) == 0 and ds.skipped["annotations"] == 1
    # missing box type and a non-positive size
    lines[1]["gtboxes"][0] = dict(tag="person", vbox=[1, 1, 2, 2])
    with pytest.raises(CrowdHumanDataError, match=r"annotation id 2000.*has no 'fbox'"):
        CrowdHumanDataset(_write(root, lines, "nofbox.odgt"), str(root / "Images"))
    lines[1]["gtboxes"][0] = person([1, 1, 0, 5], [1, 1, 0, 5])
    with pytest.raises(CrowdHumanDataError, match="non-positive size"):
        CrowdHumanDataset(_write(root, lines, "zero.odgt"), str(root / "Images"))


def test_corrupt_image_and_size_mismatch(ch_dir):
    root, lines = ch_dir
    (root / "Images" / "284193,def.jpg").write_bytes(b"garbage")
    ds = CrowdHumanDataset(str(root / "annotation_val.odgt"), str(root / "Images"))
    with pytest.raises(CorruptImageError, match=r"284193,def\.jpg: cannot read image \(ID '284193,def'"):
        ds[1]
    ds = CrowdHumanDataset(str(root / "annotation_val.odgt"), str(root / "Images"), on_error="skip")
    assert ds[1]["data_samples"].meta.extra["ID"] == "273271,abc" and ds.skipped["images"] == 1
    lines[0]["width"] = 81
    ds = CrowdHumanDataset(_write(root, lines, "size.odgt"), str(root / "Images"))
    with pytest.raises(CorruptImageError, match="image is 80x50 but the odgt says 81x50"):
        ds[0]


def test_bad_box_type():
    with pytest.raises(ValueError, match="box types"):
        CrowdHumanDataset("x.odgt", box_type="body")
