"""CocoInstanceDataset / LvisInstanceDataset: polygons + RLE + crowd, non-consecutive ids, errors and skipping."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

from forge.data import coco_dataset
from forge.data import transforms as T
from forge.data.coco_dataset import CocoInstanceDataset, CorruptImageError, LvisInstanceDataset
from forge.data.coco_reader import AnnotationError
from forge.data.collate import collate_detection
from forge.data.shapes import generate_split
from forge.data.structures import DetSample

H, W = 30, 40


def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": r["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, last, run = [], 0, 0
    for v in flat:
        if v != last:
            counts.append(run)
            run, last = 0, v
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


@pytest.fixture
def coco_dir(tmp_path):
    """Two images; image 1 has a polygon (cat 7), a compressed RLE (cat 2) and a crowd uncompressed RLE (cat 4)."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(img_dir / name)
    rle_mask = np.zeros((H, W), bool)
    rle_mask[5:15, 20:30] = True
    crowd_mask = np.zeros((H, W), bool)
    crowd_mask[20:28, 2:38] = True
    anns = [
        dict(
            id=11,
            image_id=1,
            category_id=7,
            bbox=[2.0, 3.0, 10.0, 8.0],
            area=80.0,
            iscrowd=0,
            segmentation=[[2.0, 3.0, 12.0, 3.0, 12.0, 11.0, 2.0, 11.0]],
        ),
        dict(
            id=12,
            image_id=1,
            category_id=2,
            bbox=[20.0, 5.0, 10.0, 10.0],
            area=100.0,
            iscrowd=0,
            segmentation=_rle(rle_mask),
        ),
        dict(
            id=13,
            image_id=1,
            category_id=4,
            bbox=[2.0, 20.0, 36.0, 8.0],
            area=288.0,
            iscrowd=1,
            segmentation=_uncompressed_rle(crowd_mask),
        ),
    ]
    coco = dict(
        images=[dict(id=1, file_name="a.png", width=W, height=H), dict(id=5, file_name="b.png", width=W, height=H)],
        annotations=anns,
        categories=[dict(id=7, name="seven"), dict(id=2, name="two"), dict(id=4, name="four")],
    )
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(coco))
    return tmp_path, coco, dict(rle=rle_mask, crowd=crowd_mask)


def _write(tmp_path, coco, name="instances.json"):
    path = tmp_path / name
    path.write_text(json.dumps(coco))
    return str(path)


def test_reads_polygons_rle_and_crowd_with_non_consecutive_ids(coco_dir):
    root, _, masks = coco_dir
    ds = CocoInstanceDataset("instances.json", "images", root=str(root))
    assert len(ds) == 2 and ds.num_classes == 3
    assert ds.metainfo == dict(classes=["two", "four", "seven"], cat_ids=[2, 4, 7])
    assert ds.ann_file == os.path.join(str(root), "instances.json")
    item = ds[0]
    x, s = item["inputs"], item["data_samples"]
    # the image as on disk: uint8 RGB pixel values, never normalised (that is the model's data preprocessor's job)
    assert isinstance(s, DetSample) and x.shape == (3, H, W) and x.dtype == torch.uint8
    assert torch.equal(x, torch.from_numpy(np.array(Image.open(root / "images" / "a.png"))).permute(2, 0, 1))
    gt = s.gt
    assert gt.ann_ids.tolist() == [11, 12, 13]
    assert gt.labels.tolist() == [2, 0, 1]  # cat 7 -> 2, cat 2 -> 0, cat 4 -> 1
    assert gt.iscrowd.tolist() == [False, False, True]
    assert gt.boxes.tolist() == [[2, 3, 12, 11], [20, 5, 30, 15], [2, 20, 38, 28]]
    assert gt.masks.shape == (3, H, W) and gt.masks.dtype == torch.bool
    assert torch.equal(gt.masks[1], torch.from_numpy(masks["rle"]))
    assert torch.equal(gt.masks[2], torch.from_numpy(masks["crowd"]))
    assert gt.masks[0, 5, 5] and not gt.masks[0, 20, 5]
    meta = s.meta
    assert meta.image_id == 1 and meta.file_name.endswith("a.png")
    assert meta.ori_shape == meta.img_shape == meta.pad_shape == (H, W) and meta.flip is False
    empty = ds[1]["data_samples"]
    assert empty.meta.image_id == 5 and len(empty.gt) == 0 and empty.gt.masks.shape == (0, H, W)


def test_filter_empty_and_val_pipeline(coco_dir):
    root, _, _ = coco_dir
    pipe = [T.Resize(60)]
    ds = CocoInstanceDataset(str(root / "instances.json"), str(root / "images"), pipeline=pipe, filter_empty=True)
    assert len(ds) == 1
    s = ds[0]["data_samples"]
    assert ds[0]["inputs"].shape == (3, 60, 60) and ds[0]["inputs"].dtype == torch.uint8
    assert s.meta.scale_factor == pytest.approx((1.5, 2.0)) and s.meta.ori_shape == (H, W)
    assert s.gt.masks.shape == (3, 60, 60)
    assert s.gt.boxes[1].tolist() == pytest.approx([30, 10, 45, 30])


def test_out_of_bounds_annotation_raises_naming_file_and_id(coco_dir, monkeypatch):
    root, coco, _ = coco_dir
    coco["annotations"][1]["bbox"] = [35.0, 5.0, 10.0, 10.0]  # x2 = 45 > 40
    path = _write(root, coco, "bad.json")
    with pytest.raises(AnnotationError, match=r"bad\.json.*annotation id 12.*a\.png"):
        CocoInstanceDataset(path, str(root / "images"))
    logged = []
    monkeypatch.setattr(coco_dataset, "_log", lambda msg, level=None: logged.append(msg))
    ds = CocoInstanceDataset(path, str(root / "images"), on_error="skip")
    assert ds[0]["data_samples"].gt.ann_ids.tolist() == [11, 13]
    assert ds.skipped["annotations"] == 1
    assert any("skipped 1 of 3 annotations" in m and "12" in m for m in logged)
    # within the tolerance: clipped, not an error
    coco["annotations"][1]["bbox"] = [30.5, 5.0, 10.0, 10.0]
    ds = CocoInstanceDataset(_write(root, coco, "tol.json"), str(root / "images"))
    assert ds[0]["data_samples"].gt.boxes[1].tolist() == [30.5, 5.0, 40.0, 15.0]


def test_polygon_out_of_bounds_raises(coco_dir):
    root, coco, _ = coco_dir
    coco["annotations"][0]["segmentation"] = [[2.0, 3.0, 52.0, 3.0, 12.0, 11.0]]
    with pytest.raises(AnnotationError, match="annotation id 11"):
        CocoInstanceDataset(_write(root, coco, "poly.json"), str(root / "images"))


def test_corrupt_image_raises_or_is_skipped_and_counted(coco_dir, monkeypatch):
    root, _, _ = coco_dir
    (root / "images" / "a.png").write_bytes(b"\x89PNG not really")
    ds = CocoInstanceDataset(str(root / "instances.json"), str(root / "images"))
    with pytest.raises(CorruptImageError, match=r"a\.png.*image id 1.*annotation ids \[11, 12, 13\]"):
        ds[0]
    logged = []
    monkeypatch.setattr(coco_dataset, "_log", lambda msg, level=None: logged.append(msg))
    ds = CocoInstanceDataset(str(root / "instances.json"), str(root / "images"), on_error="skip")
    item = ds[0]
    assert item["data_samples"].meta.image_id == 5  # the next image
    assert ds.skipped["images"] == 1 and any("a.png" in m and "1 so far" in m for m in logged)
    ds = CocoInstanceDataset(str(root / "instances.json"), str(root / "images"), on_error="skip", verify_images=True)
    assert len(ds) == 1 and ds.skipped["images"] == 1
    with pytest.raises(CorruptImageError, match="a.png"):
        CocoInstanceDataset(str(root / "instances.json"), str(root / "images"), verify_images=True)


def test_missing_and_mismatched_images(coco_dir):
    root, coco, _ = coco_dir
    os.remove(root / "images" / "b.png")
    ds = CocoInstanceDataset(str(root / "instances.json"), str(root / "images"))
    with pytest.raises(CorruptImageError, match=r"b\.png: image file not found \(image id 5"):
        ds[1]
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(root / "images" / "b.png")
    with pytest.raises(CorruptImageError, match=r"b\.png: image is 40x31 but .* says 40x30"):
        ds[1]


def test_other_config_errors(coco_dir):
    root, coco, _ = coco_dir
    path, images = str(root / "instances.json"), str(root / "images")
    with pytest.raises(ValueError, match="differ from the configured classes"):
        CocoInstanceDataset(path, images, classes=["seven", "two", "four"])
    with pytest.raises(ValueError, match="on_error"):
        CocoInstanceDataset(path, images, on_error="ignore")
    del coco["annotations"][0]["segmentation"]
    with pytest.raises(AnnotationError, match="annotation id 11.*no 'segmentation'"):
        CocoInstanceDataset(_write(root, coco, "noseg.json"), images)
    ds = CocoInstanceDataset(_write(root, coco, "noseg.json"), images, with_masks=False)
    assert ds[0]["data_samples"].gt.masks is None


def test_degenerate_boxes_are_dropped_and_logged(coco_dir, monkeypatch):
    root, coco, _ = coco_dir
    coco["annotations"][0]["bbox"] = [2.0, 3.0, 0.0, 8.0]
    logged = []
    monkeypatch.setattr(coco_dataset, "_log", lambda msg, level=None: logged.append(msg))
    ds = CocoInstanceDataset(_write(root, coco, "degenerate.json"), str(root / "images"))
    assert ds[0]["data_samples"].gt.ann_ids.tolist() == [12, 13]
    assert any("dropped 1 annotations with zero-size boxes" in m for m in logged)


def test_resample_empty_gives_up_with_a_clear_error(coco_dir):
    root, _, _ = coco_dir
    ds = CocoInstanceDataset(
        str(root / "instances.json"),
        str(root / "images"),
        pipeline=[T.FilterSmallBoxes(1000)],
        resample_empty=True,
        max_refetch=3,
    )
    with pytest.raises(RuntimeError, match="no usable sample after 4 attempts"):
        ds[0]


def test_lvis_reads_coco_url_paths(tmp_path):
    (tmp_path / "val2017").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "val2017" / "000000000042.jpg")
    lvis = dict(
        images=[
            dict(
                id=42,
                width=W,
                height=H,
                coco_url="http://images.cocodataset.org/val2017/000000000042.jpg",
                neg_category_ids=[3],
                not_exhaustive_category_ids=[],
            )
        ],
        annotations=[
            dict(
                id=1,
                image_id=42,
                category_id=5,
                bbox=[1.0, 1.0, 4.0, 4.0],
                area=16.0,
                segmentation=[[1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0]],
            )
        ],
        categories=[dict(id=3, name="a", frequency="r"), dict(id=5, name="b", frequency="f")],
    )
    ds = LvisInstanceDataset(_write(tmp_path, lvis, "lvis.json"), str(tmp_path))
    s = ds[0]["data_samples"]
    assert s.meta.file_name == os.path.join(str(tmp_path), "val2017", "000000000042.jpg")
    assert s.gt.labels.tolist() == [1] and s.gt.iscrowd.tolist() == [False]
    assert ds.metainfo == dict(classes=["a", "b"], cat_ids=[3, 5], frequencies=["r", "f"])


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_split(str(root), "train", 8, size=64, seed=1)
    return root


def test_dataset_pickles_and_loads_in_workers_deterministically(shapes_root):
    from mmengine.runner import Runner

    pipe = [
        T.PhotometricDistort(),
        T.Expand(fill=(123.68, 116.78, 103.94)),
        T.RandomSampleCrop(),
        T.RandomMirror(),
        T.Resize(48),
        T.FilterSmallBoxes(2),
    ]
    ds = CocoInstanceDataset(
        str(shapes_root / "annotations" / "instances_train.json"),
        str(shapes_root / "train"),
        pipeline=pipe,
        filter_empty=True,
        resample_empty=True,
    )
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) == 8
    assert clone.get_record(3) == ds.get_record(3)
    batches = []
    for run in range(2):
        np.random.seed(100 + run)  # the parent's state differs: only mmengine's worker seeding makes runs agree
        loader = Runner.build_dataloader(
            dict(
                dataset=ds,
                batch_size=4,
                num_workers=2,
                sampler=dict(type="DefaultSampler", shuffle=True),
                collate_fn=collate_detection,
                persistent_workers=False,
            ),
            seed=7,
        )
        batches.append(next(iter(loader)))
    a, b = batches
    assert a["inputs"].shape == (4, 3, 48, 48)
    assert torch.equal(a["inputs"], b["inputs"])
    assert [s.gt.boxes.tolist() for s in a["data_samples"]] == [s.gt.boxes.tolist() for s in b["data_samples"]]


def test_segmentation_without_area_is_kept_and_reported(coco_dir, monkeypatch):
    root, coco, _ = coco_dir
    coco["annotations"][0]["segmentation"] = []
    coco["annotations"][2]["segmentation"] = [[2.0, 3.0, 5.0, 3.0]]  # two points: no area
    logged = []
    monkeypatch.setattr(coco_dataset, "_log", lambda msg, level=None: logged.append(msg))
    ds = CocoInstanceDataset(_write(root, coco, "noarea.json"), str(root / "images"))
    assert ds.empty_mask_ann_ids == [11, 13]
    assert any("2 of 3 annotations" in m and "[11, 13]" in m and "encloses no area" in m for m in logged), logged
    gt = ds[0]["data_samples"].gt
    assert gt.ann_ids.tolist() == [11, 12, 13] and gt.masks[0].sum() == 0 and gt.masks[1].sum() > 0
