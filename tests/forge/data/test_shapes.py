"""forge-make-shapes: the stated properties of the synthetic instance set, determinism and speed."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from forge.cli.make_shapes import main
from forge.data.coco_dataset import CocoInstanceDataset
from forge.data.coco_reader import CocoAnnotations
from forge.data.shapes import CATEGORIES, SPLITS, ensure_shapes, render_image
from forge.ops.boxes import box_xywh_to_xyxy
from forge.ops.masks import masks_to_boxes, segm_to_mask

SIZE = 128
N_TRAIN, N_VAL = 40, 10


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    start = time.perf_counter()
    assert main([str(out), "--train", str(N_TRAIN), "--val", str(N_VAL), "--size", str(SIZE), "--seed", "3"]) == 0
    took = time.perf_counter() - start
    return out, took


def _load(out, split):
    with open(os.path.join(out, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def test_layout_and_coco_validity(shapes):
    out, took = shapes
    assert took < 0.25 * (N_TRAIN + N_VAL), f"generation took {took:.1f} s"  # ~0.02 s per image when idle
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        coco = _load(out, split)
        assert len(coco["images"]) == n
        for img in coco["images"]:
            path = os.path.join(out, split, img["file_name"])
            assert Image.open(path).size == (SIZE, SIZE) == (img["width"], img["height"])
        anns = CocoAnnotations.load(os.path.join(out, "annotations", f"instances_{split}.json"))
        assert len(anns.dataset["annotations"]) >= 2 * n
        assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


def test_classes_ids_and_sizes(shapes):
    out, _ = shapes
    coco = _load(out, "train")
    ids = [c["id"] for c in coco["categories"]]
    assert len(ids) >= 4 and ids != list(range(1, len(ids) + 1))  # non-consecutive ids
    assert {a["category_id"] for a in coco["annotations"]} == set(ids)  # every class occurs
    for a in coco["annotations"]:
        extent = max(a["shape_bbox"][2], a["shape_bbox"][3]) / SIZE
        assert 0.1 - 2 / SIZE <= extent <= 0.5 + 2 / SIZE, a
        assert a["iscrowd"] == 0


def test_masks_describe_the_visible_part(shapes):
    out, _ = shapes
    coco = _load(out, "train")
    kinds = set()
    for a in coco["annotations"]:
        segm = a["segmentation"]
        kinds.add(type(segm).__name__)
        mask = segm_to_mask(segm, SIZE, SIZE)
        assert int(mask.sum()) == a["area"] > 0
        assert masks_to_boxes(mask[None])[0].tolist() == box_xywh_to_xyxy(torch.tensor([a["bbox"]]))[0].tolist()
        assert a["area"] <= a["full_area"]
        assert a["area"] >= 0.4 * a["full_area"], "no object is almost fully occluded"
        if isinstance(segm, list):
            assert a["area"] == a["full_area"]  # polygons only for unoccluded shapes
    assert kinds == {"list", "dict"}  # both polygons and RLE occur


def test_overlap_occlusion_and_colours_match_regenerated_scene(shapes):
    out, _ = shapes
    coco = _load(out, "train")
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    overlapping = total = 0
    for i in range(N_TRAIN):
        img, objects = render_image(np.random.default_rng([3, SPLITS["train"], i, SIZE]), SIZE)
        anns = by_image[i + 1]
        assert len(anns) == len(objects)
        png = np.asarray(Image.open(os.path.join(out, "train", f"{i + 1:06d}.png")))
        assert np.array_equal(png, img)
        # background is textured, not flat
        background = ~np.any([o.full for o in objects], axis=0)
        assert png[background].std(axis=0).max() > 2
        for k, (obj, a) in enumerate(zip(objects, anns)):
            assert np.array_equal(segm_to_mask(a["segmentation"], SIZE, SIZE).numpy(), obj.visible)
            # what the mask covers is painted in the object's colour (plus mild noise)
            assert np.abs(np.median(png[obj.visible].astype(float), axis=0) - obj.colour).max() <= 3
            # later shapes cover earlier ones: visible = full minus the union of later shapes
            later = np.any([o.full for o in objects[k + 1 :]], axis=0) if k + 1 < len(objects) else 0
            assert np.array_equal(obj.visible, obj.full & ~later)
            total += 1
            overlapping += any((obj.full & o.full).any() for j, o in enumerate(objects) if j != k)
    assert overlapping / total >= 0.2, f"only {overlapping}/{total} objects overlap another"


def test_deterministic_from_seed_and_loadable(shapes, tmp_path):
    out, _ = shapes
    main([str(tmp_path / "a"), "--train", "3", "--val", "1", "--size", str(SIZE), "--seed", "3"])
    main([str(tmp_path / "b"), "--train", "3", "--val", "1", "--size", str(SIZE), "--seed", "4"])
    same = _load(tmp_path / "a", "train")["annotations"]
    ref = [a for a in _load(out, "train")["annotations"] if a["image_id"] <= 3]
    assert same == ref  # image i depends only on (seed, split, i, size)
    assert same != _load(tmp_path / "b", "train")["annotations"]
    ds = CocoInstanceDataset(
        str(tmp_path / "a" / "annotations" / "instances_val.json"),
        str(tmp_path / "a" / "val"),
        classes=[c["name"] for c in CATEGORIES],
    )
    assert ds.metainfo["cat_ids"] == [c["id"] for c in CATEGORIES]
    assert ds[0]["inputs"].shape == (3, SIZE, SIZE)


def test_ensure_shapes_generates_once(tmp_path):
    root = str(tmp_path / "s")
    assert ensure_shapes(root, 2, 1, size=64) is True
    assert ensure_shapes(root, 2, 1, size=64) is False
    assert ensure_shapes(root, 3, 1, size=64) is True
    assert len(_load(root, "train")["images"]) == 3


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--size", "8"])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--train", "-1"])


def test_dataset_configs_compose_and_build(shapes):
    from hydra.utils import get_method, instantiate
    from omegaconf import OmegaConf

    from tests.forge.helpers import compose_cfg

    out, _ = shapes
    cfg = compose_cfg(["dataset=shapes", "pipeline=yolact_shapes", f"dataset.root={out}", "pipeline.img_size=64"])
    train = instantiate(cfg.dataset.train, _convert_="partial")
    val = instantiate(cfg.dataset.test, _convert_="partial")
    assert len(train) == N_TRAIN and len(val) == N_VAL
    assert train.metainfo["classes"] == list(cfg.dataset.classes) and cfg.dataset.num_classes == len(CATEGORIES)
    np.random.seed(0)
    batch = get_method(cfg.dataset.collate_fn)([train[0], val[0]])
    assert batch["inputs"].shape == (2, 3, 64, 64)
    for name, pipeline in (("coco", "yolact_ssd"), ("lvis", "yolact_ssd"), ("crowdhuman", "crowddet")):
        c = OmegaConf.to_container(compose_cfg([f"dataset={name}", f"pipeline={pipeline}"]).dataset, resolve=True)
        for split in ("train", "val", "test"):
            node = c[split]
            assert get_method(node["_target_"]) and node["ann_file"].startswith(c["root"])
            assert all(get_method(t["_target_"]) for t in node["pipeline"])
    assert len(compose_cfg(["dataset=coco"]).dataset.classes) == 80
