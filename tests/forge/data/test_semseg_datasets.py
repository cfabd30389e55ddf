"""Semantic-segmentation datasets on tiny hand-written folders in the benchmarks' on-disk layouts."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from forge.data.semseg import (
    CONTEXT59_CLASSES,
    CocoStuffDataset,
    LabelError,
    PascalContextDataset,
    SemSegDataset,
    VOCSegDataset,
    collate_semseg,
)
from forge.data.transforms.semseg import RandomResizeSeg


def _img(path, h, w, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _label(path, arr, palette=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="L")
    if palette:  # VOC's SegmentationClass files are palette PNGs: indices are the labels
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        im = Image.fromarray(arr.astype(np.uint8), mode="P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path)


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOC2012"
    seg = np.array([[0, 1, 1, 255], [20, 20, 0, 15], [3, 3, 3, 3]])
    for stem, adir in (("a", "SegmentationClass"), ("b", "SegmentationClassAug")):
        _img(str(root / "JPEGImages" / f"{stem}.jpg"), 3, 4)
        _label(str(root / adir / f"{stem}.png"), seg, palette=adir == "SegmentationClass")
    os.makedirs(root / "ImageSets/Segmentation")
    (root / "ImageSets/Segmentation/val.txt").write_text("a\n")
    (root / "ImageSets/Segmentation/aug.txt").write_text("b\n")
    return root, seg


def test_voc20_reduces_the_zero_label(voc):
    root, seg = voc
    ds = VOCSegDataset(str(root), split="val")
    assert len(ds) == 1 and ds.num_classes == 20
    item = ds[0]
    gt = item["data_samples"].gt_sem_seg.numpy()
    expect = np.where(seg == 0, 255, np.where(seg == 255, 255, seg - 1))
    np.testing.assert_array_equal(gt, expect)
    np.testing.assert_array_equal(item["data_samples"].ori_gt_sem_seg.numpy(), expect)
    assert item["inputs"].shape == (3, 3, 4) and item["inputs"].dtype == torch.uint8


def test_voc21_keeps_background_and_aug_pairs_folders(voc):
    root, seg = voc
    ds = VOCSegDataset(str(root), split=["val", "aug"], ann_dir=["SegmentationClass", "SegmentationClassAug"],
                       with_background=True)
    assert len(ds) == 2 and ds.num_classes == 21
    for i in range(2):
        np.testing.assert_array_equal(ds[i]["data_samples"].gt_sem_seg.numpy(), seg)
    assert ds.records[1][1].endswith(os.path.join("SegmentationClassAug", "b.png"))


def test_missing_files_are_named(voc, tmp_path):
    root, _ = voc
    with pytest.raises(FileNotFoundError, match="train.txt"):
        VOCSegDataset(str(root), split="train")
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nzz\n")
    with pytest.raises(FileNotFoundError, match=r"zz\.jpg.*train\.txt"):
        VOCSegDataset(str(root), split="train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VOCSegDataset(str(tmp_path / "nowhere"))


def test_wrong_label_value_names_file_and_value(voc):
    root, seg = voc
    bad = seg.copy()
    bad[0, 0] = 21
    _label(str(root / "SegmentationClass" / "a.png"), bad, palette=True)
    ds = VOCSegDataset(str(root), split="val")
    with pytest.raises(LabelError, match=r"a\.png: label value 21 .*0\.\.20 or 255"):
        ds[0]


def test_rgb_label_map_and_size_mismatch_raise(voc):
    root, _ = voc
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "SegmentationClass" / "a.png")
    with pytest.raises(LabelError, match="single-channel"):
        VOCSegDataset(str(root), split="val")[0]
    _label(str(root / "SegmentationClass" / "a.png"), np.zeros((5, 4)))
    with pytest.raises(LabelError, match="differ in size"):
        VOCSegDataset(str(root), split="val")[0]


def test_context_59_and_60(tmp_path):
    root = tmp_path / "VOC2010"
    seg = np.array([[0, 1, 59], [30, 0, 2]])
    _img(str(root / "JPEGImages" / "2008_000001.jpg"), 2, 3)
    _label(str(root / "SegmentationClassContext" / "2008_000001.png"), seg)
    os.makedirs(root / "ImageSets/SegmentationContext")
    (root / "ImageSets/SegmentationContext/val.txt").write_text("2008_000001\n")
    ds59 = PascalContextDataset(str(root))
    assert ds59.classes == CONTEXT59_CLASSES
    np.testing.assert_array_equal(ds59[0]["data_samples"].gt_sem_seg.numpy(), [[255, 0, 58], [29, 255, 1]])
    ds60 = PascalContextDataset(str(root), with_background=True)
    assert ds60.num_classes == 60 and ds60.classes[0] == "background"
    np.testing.assert_array_equal(ds60[0]["data_samples"].gt_sem_seg.numpy(), seg)
    _label(str(root / "SegmentationClassContext" / "2008_000001.png"), np.full((2, 3), 60))
    with pytest.raises(LabelError, match="label value 60"):
        ds59[0]


def test_coco_stuff_layout_and_values(tmp_path):
    root = tmp_path / "coco_stuff164k"
    seg = np.array([[0, 170, 255], [5, 5, 5]])
    for stem in ("000000000139", "000000000285"):
        _img(str(root / "images/val2017" / f"{stem}.jpg"), 2, 3)
        _label(str(root / "annotations/val2017" / f"{stem}_labelTrainIds.png"), seg)
    ds = CocoStuffDataset(str(root), split="val")
    assert len(ds) == 2 and ds.num_classes == 171
    np.testing.assert_array_equal(ds[1]["data_samples"].gt_sem_seg.numpy(), seg)
    os.remove(root / "annotations/val2017/000000000285_labelTrainIds.png")
    with pytest.raises(FileNotFoundError, match="000000000285_labelTrainIds.png"):
        CocoStuffDataset(str(root), split="val")
    _label(str(root / "annotations/val2017/000000000285_labelTrainIds.png"), np.full((2, 3), 171))
    with pytest.raises(LabelError, match="171"):
        CocoStuffDataset(str(root), split="val")[1]


def test_test_resize_keeps_original_labels_and_collate_pads(tmp_path):
    root = tmp_path / "d"
    for stem, (h, w) in (("a", (20, 40)), ("b", (30, 15))):
        _img(str(root / "img" / f"{stem}.png"), h, w)
        _label(str(root / "ann" / f"{stem}.png"), np.ones((h, w)))
    ds = SemSegDataset(str(root), "img", "ann", classes=("x", "y"), max_raw_value=1, img_suffix=".png",
                       pipeline=[RandomResizeSeg((2048, 10))])  # short side 10
    a, b = ds[0], ds[1]
    assert tuple(a["inputs"].shape[1:]) == (10, 20) and tuple(b["inputs"].shape[1:]) == (20, 10)
    assert tuple(a["data_samples"].ori_gt_sem_seg.shape) == (20, 40)
    assert a["data_samples"].meta.scale_factor == (0.5, 0.5)
    batch = collate_semseg([a, b])
    assert tuple(batch["inputs"].shape) == (2, 3, 20, 20)
    s0 = batch["data_samples"][0]
    assert s0.meta.img_shape == (10, 20) and s0.meta.pad_shape == (20, 20)
    assert (s0.gt_sem_seg[10:] == 255).all() and (s0.gt_sem_seg[:10] == 1).all()
    assert (batch["inputs"][0, :, 10:] == 0).all()


def test_suppress_labels_marks_unlabelled_pixels(voc):
    root, seg = voc
    ds = VOCSegDataset(str(root), split="val", suppress_labels=[0, 19])
    item = ds[0]["data_samples"]
    full = np.where((seg == 0) | (seg == 255), 255, seg - 1)
    np.testing.assert_array_equal(item.gt_sem_seg.numpy(), np.where(np.isin(full, [0, 19]), -1, full))
    np.testing.assert_array_equal(item.ori_gt_sem_seg.numpy(), full)
    every = VOCSegDataset(str(root), split="val", suppress_labels="all")[0]["data_samples"].gt_sem_seg.numpy()
    np.testing.assert_array_equal(every, np.where(full == 255, 255, -1))
    with pytest.raises(ValueError, match=r"suppress_labels \[20\]"):
        VOCSegDataset(str(root), split="val", suppress_labels=[20])
