import copy
import json

import pytest
import torch

from forge.data.coco_reader import AnnotationError, CocoAnnotations, LvisAnnotations


def _coco() -> dict:
    return {
        "images": [
            {"id": 7, "width": 20, "height": 10, "file_name": "a.jpg"},
            {"id": 9, "width": 30, "height": 15, "file_name": "b.jpg"},
        ],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 5, "name": "plane"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 90,
                "bbox": [1, 2, 3, 4],
                "area": 12.0,
                "iscrowd": 0,
                "segmentation": [[1, 2, 4, 2, 4, 6, 1, 6]],
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 1,
                "bbox": [0, 0, 5, 5],
                "iscrowd": 1,
                "segmentation": {"size": [10, 20], "counts": [0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 155]},
            },
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [2.5, 1.5, 4, 2]},
        ],
    }


def test_mapping_grouping_and_instances():
    coco = CocoAnnotations.load(_coco())
    assert coco.source == "<dict>"
    assert coco.cat_ids == [1, 5, 90]
    assert coco.cat_id_to_label == {1: 0, 5: 1, 90: 2}
    assert coco.label_to_cat_id == {0: 1, 1: 5, 2: 90}
    assert coco.class_names == ("person", "plane", "toothbrush")
    assert coco.image_ids == [7, 9] and len(coco) == 2 and coco.num_classes == 3
    assert [a["id"] for a in coco.anns(7)] == [1, 2, 3]
    assert coco.anns(9) == []
    with pytest.raises(KeyError, match="unknown image id 8"):
        coco.anns(8)
    # filled in: iscrowd default, area of box-only annotation
    assert coco.anns(7)[2]["iscrowd"] == 0 and coco.anns(7)[2]["area"] == 8.0
    inst = coco.to_instances(7)
    assert inst.boxes.tolist() == [[1, 2, 4, 6], [0, 0, 5, 5], [2.5, 1.5, 6.5, 3.5]]
    assert inst.labels.tolist() == [2, 0, 1]
    assert inst.iscrowd.tolist() == [False, True, False]
    assert inst.ann_ids.tolist() == [1, 2, 3]
    assert inst.masks is None
    empty = coco.to_instances(9, with_masks=False)
    assert len(empty) == 0


def test_instances_with_masks():
    d = _coco()
    d["annotations"] = d["annotations"][:2]
    coco = CocoAnnotations.load(d)
    inst = coco.to_instances(7, with_masks=True)
    assert inst.masks.shape == (2, 10, 20) and inst.masks.dtype == torch.bool
    assert inst.masks[0].sum() == 12  # polygon 1..4 x 2..6 rasterised
    assert inst.masks[1, :5, :5].all() and inst.masks[1].sum() == 25
    assert coco.to_instances(9, with_masks=True).masks.shape == (0, 15, 30)
    with pytest.raises(AnnotationError, match="annotation id 3 has no 'segmentation'"):
        CocoAnnotations.load(_coco()).to_instances(7, with_masks=True)


def test_reads_files_and_names_them(tmp_path):
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(_coco()))
    assert CocoAnnotations.load(path).source == str(path)
    assert CocoAnnotations.load(str(path)).cat_ids == [1, 5, 90]
    with pytest.raises(AnnotationError, match="missing.json: file not found"):
        CocoAnnotations.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match="bad.json: not valid JSON"):
        CocoAnnotations.load(bad)
    d = _coco()
    d["annotations"][1]["category_id"] = 4
    path.write_text(json.dumps(d))
    with pytest.raises(AnnotationError, match=r"inst\.json: annotation id 2 refers to unknown category_id 4"):
        CocoAnnotations.load(path)


def test_non_utf8_file_is_one_clear_error(tmp_path):
    path = tmp_path / "latin1.json"
    text = json.dumps(_coco()).replace('"images"', '"images", "info": {"author": "Jos\u00e9"}, "x"', 1)
    path.write_bytes(text.encode("latin-1"))  # é as the single byte 0xe9
    with pytest.raises(AnnotationError, match=r"latin1\.json: not UTF-8 text \(byte 0xe9 at offset \d+\)") as err:
        CocoAnnotations.load(path)
    assert "\n" not in str(err.value) and err.value.__cause__ is None


def _broken(edit):
    d = copy.deepcopy(_coco())
    edit(d)
    return d


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("categories"), "missing top-level key 'categories'"),
        (lambda d: d["images"][1].pop("height"), r"image at index 1 \(id=9\) is missing key 'height'"),
        (lambda d: d["annotations"][0].pop("bbox"), r"annotation at index 0 \(id=1\) is missing key 'bbox'"),
        (lambda d: d["categories"][0].pop("name"), "category at index 0 .* missing key 'name'"),
        (lambda d: d["annotations"][2].update(image_id=8), "annotation id 3 refers to unknown image_id 8"),
        (lambda d: d["annotations"][2].update(category_id=2), "annotation id 3 refers to unknown category_id 2"),
        (lambda d: d["annotations"][2].update(bbox=[0, 0, -1, 3]), "annotation id 3: bbox has a negative"),
        (lambda d: d["annotations"][2].update(bbox=[0, 0, 3]), "annotation id 3: bbox must be 4 finite numbers"),
        (lambda d: d["annotations"][2].update(bbox=[0, 0, float("nan"), 3]), "annotation id 3: bbox must be 4"),
        (lambda d: d["annotations"][2].update(bbox=[0, 0, 0, 3]), "annotation id 3: degenerate bbox"),
        (lambda d: d["annotations"][2].update(id=1), "duplicate annotation id 1"),
        (lambda d: d["images"][1].update(id=7), "duplicate image id 7"),
        (lambda d: d["categories"][1].update(id=90), "duplicate category id 90"),
        (lambda d: d["annotations"][2].update(iscrowd=2), "annotation id 3: iscrowd must be 0 or 1"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), "polygon 0 has an odd length"),
        (lambda d: d["annotations"][0].update(segmentation=[["a", 2, 3, 4, 5, 6]]), "polygon 0 is not a list"),
        (lambda d: d["annotations"][0].update(segmentation="x"), "segmentation must be polygons or an RLE"),
        (lambda d: d["annotations"][1]["segmentation"].update(size=[11, 20]), "RLE size .* differs from image 7"),
        (lambda d: d["images"][0].update(width=0), "image id 7: 'width' must be a positive integer"),
        (lambda d: d["annotations"][0].update(area=-1), "annotation id 1: area must be a non-negative number"),
    ],
)
def test_errors_name_the_element(edit, message):
    with pytest.raises(AnnotationError, match=message):
        CocoAnnotations.load(_broken(edit))


def test_degenerate_keep_and_drop():
    d = _broken(lambda d: d["annotations"][2].update(bbox=[0, 0, 0, 3]))
    keep = CocoAnnotations.load(copy.deepcopy(d), degenerate="keep")
    assert keep.degenerate_ann_ids == [3] and len(keep.anns(7)) == 3
    drop = CocoAnnotations.load(copy.deepcopy(d), degenerate="drop")
    assert drop.degenerate_ann_ids == [3] and [a["id"] for a in drop.anns(7)] == [1, 2]
    assert len(drop.dataset["annotations"]) == 2
    with pytest.raises(ValueError, match="degenerate must be"):
        CocoAnnotations.load(d, degenerate="fix")


def test_annotation_id_zero_warns():
    d = _broken(lambda d: d["annotations"][2].update(id=0))
    with pytest.warns(UserWarning, match="annotation id 0"):
        CocoAnnotations.load(d)


def _lvis() -> dict:
    d = _coco()
    for a in d["annotations"]:
        a.pop("iscrowd", None)
    d["annotations"][1]["segmentation"] = [[0, 0, 5, 0, 5, 5, 0, 5]]
    for c, f in zip(d["categories"], "rcf"):
        c["frequency"] = f
    d["images"][0].update(neg_category_ids=[5], not_exhaustive_category_ids=[90])
    d["images"][1].update(neg_category_ids=[], not_exhaustive_category_ids=[])
    return d


def test_lvis_fields():
    lvis = LvisAnnotations.load(_lvis())
    assert lvis.neg_cat_ids(7) == [5] and lvis.not_exhaustive_cat_ids(7) == [90]
    assert lvis.cat_frequency == {90: "r", 1: "c", 5: "f"}
    assert all(a["iscrowd"] == 0 for a in lvis.dataset["annotations"])
    assert lvis.cat_id_to_label == {1: 0, 5: 1, 90: 2}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["categories"][0].update(frequency="x"), "category id 90: 'frequency' must be one of r/c/f"),
        (lambda d: d["images"][0].pop("neg_category_ids"), "image id 7 is missing key 'neg_category_ids'"),
        (lambda d: d["images"][0].update(not_exhaustive_category_ids=[3]), "contains unknown category id 3"),
        (lambda d: d["annotations"][0].update(iscrowd=1), "LVIS has no crowd annotations"),
    ],
)
def test_lvis_errors(edit, message):
    d = _lvis()
    edit(d)
    with pytest.raises(AnnotationError, match=message):
        LvisAnnotations.load(d)
