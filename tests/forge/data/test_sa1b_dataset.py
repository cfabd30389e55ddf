"""Sa1bDataset: the SA-1B on-disk format (sa_N.jpg + sa_N.json) from a generated fixture, the COCO dataset's item
structure, subset lists, and errors naming the file and key."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from forge.data import transforms as T
from forge.data.coco_dataset import CocoInstanceDataset, CorruptImageError
from forge.data.coco_reader import AnnotationError
from forge.data.collate import collate_detection
from forge.data.sa1b_dataset import Sa1bDataset, read_subset
from forge.data.shapes import generate_split
from forge.data.structures import DetSample
from forge.ops.masks import rle_to_mask, segm_to_rle

FIRST_ID = 100  # image ids are the file-name numbers; not 1.. to show they are read from the name


def make_sa1b(root: str, num_images: int = 3, size: int = 64, seed: int = 0) -> tuple[str, str]:
    """Write a tiny SA-1B-format folder from the synthetic shapes (every object a class-agnostic mask):
    ``<root>/sa1b/sa_<N>.jpg`` + ``sa_<N>.json`` with RLE masks, xywh boxes, areas, one point per mask (its first
    pixel in row-major order), and fixed predicted_iou / stability_score. Returns ``(sa1b_dir, coco_dir)``; the COCO
    copy is the source, for comparison."""
    coco_dir = os.path.join(root, "coco")
    coco = generate_split(coco_dir, "val", num_images, size=size, seed=seed)
    out = os.path.join(root, "sa1b")
    os.makedirs(out, exist_ok=True)
    for img in coco["images"]:
        n = FIRST_ID + img["id"]
        h, w = img["height"], img["width"]
        pixels = np.array(Image.open(os.path.join(coco_dir, "val", img["file_name"])).convert("RGB"))
        Image.fromarray(pixels).save(os.path.join(out, f"sa_{n}.jpg"), quality=95)
        anns = []
        for a in (a for a in coco["annotations"] if a["image_id"] == img["id"]):
            rle = segm_to_rle(a["segmentation"], h, w)
            ys, xs = np.nonzero(rle_to_mask(rle).numpy())
            anns.append(dict(id=a["id"], segmentation=dict(size=[h, w], counts=rle["counts"]), bbox=a["bbox"],
                             area=int(a["area"]), predicted_iou=0.9, point_coords=[[float(xs[0]), float(ys[0])]],
                             stability_score=0.95, crop_box=[0, 0, w, h]))
        meta = dict(image=dict(image_id=n, width=w, height=h, file_name=f"sa_{n}.jpg"), annotations=anns)
        with open(os.path.join(out, f"sa_{n}.json"), "w") as f:
            json.dump(meta, f)
    return out, coco_dir


@pytest.fixture()
def sa1b(tmp_path):
    return make_sa1b(str(tmp_path))


def test_items_match_the_coco_dataset(sa1b):
    sa_dir, coco_dir = sa1b
    ds = Sa1bDataset(sa_dir)
    ref = CocoInstanceDataset(os.path.join(coco_dir, "annotations", "instances_val.json"),
                              os.path.join(coco_dir, "val"))
    assert len(ds) == len(ref) == 3 and ds.metainfo == dict(classes=["object"], cat_ids=[1])
    for i in range(3):
        item, want = ds[i], ref[i]
        s, r = item["data_samples"], want["data_samples"]
        assert isinstance(s, DetSample) and s.meta.image_id == FIRST_ID + r.meta.image_id
        assert item["inputs"].dtype == torch.uint8 and item["inputs"].shape == want["inputs"].shape
        jpg = np.array(Image.open(os.path.join(sa_dir, f"sa_{s.meta.image_id}.jpg")).convert("RGB"))
        assert torch.equal(item["inputs"], torch.from_numpy(jpg).permute(2, 0, 1))
        assert torch.equal(s.gt.masks, r.gt.masks) and torch.equal(s.gt.boxes, r.gt.boxes)
        assert torch.equal(s.gt.ann_ids, r.gt.ann_ids) and (s.gt.labels == 0).all() and not s.gt.iscrowd.any()
        pts = s.meta.extra["point_coords"]
        assert pts.shape == (len(s.gt), 2)
        assert s.gt.masks[torch.arange(len(s.gt)), pts[:, 1].long(), pts[:, 0].long()].all()
        assert torch.allclose(s.meta.extra["predicted_iou"], torch.tensor(0.9))
    assert ds.get_record(1)["image_id"] == FIRST_ID + 2  # ids without reading the json (embedding cache)


def test_pipeline_and_collate(sa1b):
    ds = Sa1bDataset(sa1b[0], pipeline=[T.Resize(size=32)], max_instances=2)
    batch = collate_detection([ds[0], ds[1]])
    assert batch["inputs"].shape == (2, 3, 32, 32)
    assert all(len(s.gt) <= 2 and s.gt.masks.shape[-2:] == (32, 32) for s in batch["data_samples"])


def test_subset_file(sa1b, tmp_path):
    sa_dir = sa1b[0]
    sub = tmp_path / "subset.txt"
    sub.write_text(f"# val subset\nsa_{FIRST_ID + 3}.jpg\n\nsa_{FIRST_ID + 1}  # first image\n")
    assert read_subset(str(sub)) == [f"sa_{FIRST_ID + 3}", f"sa_{FIRST_ID + 1}"]
    ds = Sa1bDataset(sa_dir, subset_file=str(sub))
    assert [ds.get_record(i)["image_id"] for i in range(len(ds))] == [FIRST_ID + 3, FIRST_ID + 1]
    sub.write_text("sa_7\n")
    with pytest.raises(AnnotationError, match=r"sa_7\.jpg: file not found \(listed in .*subset\.txt\)"):
        Sa1bDataset(sa_dir, subset_file=str(sub))
    assert len(Sa1bDataset(sa_dir, subset_file=str(sub), on_error="skip")) == 0
    sub.write_text("sa_101\nimage_5\n")
    with pytest.raises(AnnotationError, match=r"subset\.txt:2: 'image_5' is not an SA-1B file stem"):
        read_subset(str(sub))
    sub.write_text("sa_101\nsa_101\n")
    with pytest.raises(AnnotationError, match=r"subset\.txt:2: sa_101 listed again \(first on line 1\)"):
        read_subset(str(sub))


def _edit(sa_dir: str, n: int, fn) -> str:
    path = os.path.join(sa_dir, f"sa_{n}.json")
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def test_errors_name_the_file_and_key(sa1b):
    sa_dir = sa1b[0]
    n = FIRST_ID + 1
    os.remove(os.path.join(sa_dir, f"sa_{FIRST_ID + 2}.json"))
    with pytest.raises(AnnotationError, match=rf"sa_{FIRST_ID + 2}\.json: file not found"):
        Sa1bDataset(sa_dir)
    ds = Sa1bDataset(sa_dir, on_error="skip")
    assert len(ds) == 2 and ds.skipped["images"] == 1

    _edit(sa_dir, n, lambda d: d["annotations"][1].pop("bbox"))
    ds = Sa1bDataset(sa_dir, on_error="skip")
    n_anns = len(json.load(open(os.path.join(sa_dir, f"sa_{n}.json")))["annotations"])
    assert len(ds[0]["data_samples"].gt) == n_anns - 1 and ds.skipped["annotations"] == 1
    with pytest.raises(AnnotationError, match=rf"sa_{n}\.json: annotations\[1\] \(id \d+\) is missing key 'bbox'"):
        Sa1bDataset(sa_dir, subset_file=_subset(sa_dir, n))[0]

    def wrong_size(d):
        d["annotations"][0]["segmentation"]["size"] = [5, 5]
    _edit(sa_dir, n, wrong_size)
    with pytest.raises(AnnotationError, match=r"segmentation size \[5, 5\] differs from the image's \[64, 64\]"):
        Sa1bDataset(sa_dir, subset_file=_subset(sa_dir, n))[0]
    _edit(sa_dir, n, lambda d: d["image"].update(image_id=5))
    with pytest.raises(AnnotationError, match=rf"sa_{n}\.json: image\.image_id 5 differs from the file name's"):
        Sa1bDataset(sa_dir, subset_file=_subset(sa_dir, n))[0]
    _edit(sa_dir, n, lambda d: d.pop("annotations"))
    with pytest.raises(AnnotationError, match=rf"sa_{n}\.json: missing top-level key 'annotations'"):
        Sa1bDataset(sa_dir, subset_file=_subset(sa_dir, n))[0]
    with open(os.path.join(sa_dir, f"sa_{n}.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(CorruptImageError, match=rf"sa_{n}\.json: cannot read annotation json"):
        Sa1bDataset(sa_dir, subset_file=_subset(sa_dir, n))[0]
    with pytest.raises(AnnotationError, match="image folder not found"):
        Sa1bDataset(os.path.join(sa_dir, "nowhere"))


def _subset(sa_dir: str, n: int) -> str:
    path = os.path.join(os.path.dirname(sa_dir), f"only_{n}.txt")
    with open(path, "w") as f:
        f.write(f"sa_{n}\n")
    return path
