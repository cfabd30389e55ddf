"""SA-1B (Segment Anything 1-Billion) in its on-disk format: one ``sa_<N>.jpg`` and one ``sa_<N>.json`` per image.

The json (as released, one per image)::

    {"image": {"image_id": N, "width": W, "height": H, "file_name": "sa_N.jpg"},
     "annotations": [{"id": ..., "segmentation": {"size": [H, W], "counts": "<COCO compressed RLE>"},
                      "bbox": [x, y, w, h], "area": ..., "predicted_iou": ..., "point_coords": [[x, y]],
                      "stability_score": ..., "crop_box": [x, y, w, h]}, ...]}

Items are those of :class:`forge.data.coco_dataset.CocoInstanceDataset` (``dict(inputs=(3, H, W) uint8,
data_samples=DetSample)``), so the same pipelines, collate function and metrics apply. SA-1B masks are
class-agnostic: every instance has label 0 (class ``object``); ``iscrowd`` is False; ``ann_ids`` are the
annotations' ``id``. The per-annotation extras go to ``meta.extra`` in **original-image** coordinates (pipelines do
not transform them): ``point_coords`` ``(N, 2)`` (the annotation's first point), ``predicted_iou`` ``(N,)``,
``stability_score`` ``(N,)``.

The image id is the number in the file name (``sa_223750.jpg`` -> 223750, as in the release); the json's
``image.image_id`` must agree. The json files are read lazily (an SA-1B json holds ~100 RLE masks, 1% of SA-1B is
110k images), so building the dataset only lists the files; a bad json is found when its image is read and raises
:class:`~forge.data.coco_reader.AnnotationError` naming the file, the annotation and the key (``on_error='skip'``:
a bad annotation is left out, a bad image replaced by the next, both counted in ``skipped`` and logged).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from forge.data.coco_dataset import CorruptImageError, InstanceDatasetBase, _log, load_rgb
from forge.data.coco_reader import AnnotationError
from forge.data.structures import ImageMeta, Instances
from forge.ops.boxes import box_xywh_to_xyxy, clip_boxes

__all__ = ["Sa1bDataset", "read_subset"]

_STEM = re.compile(r"^sa_(\d+)$")
ANN_KEYS = ("id", "segmentation", "bbox")


def read_subset(path: str) -> list[str]:
    """File stems listed one per line (``sa_223750``; a ``.jpg`` / ``.json`` suffix is dropped; blank lines and
    ``#`` comments ignored), in file order. A repeated stem is an error naming the file and line."""
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: subset file not found")
    stems, seen = [], {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            stem = line.split("#", 1)[0].strip()
            if not stem:
                continue
            stem = re.sub(r"\.(jpg|json)$", "", os.path.basename(stem))
            if not _STEM.match(stem):
                raise AnnotationError(f"{path}:{n}: {stem!r} is not an SA-1B file stem (sa_<number>)")
            if stem in seen:
                raise AnnotationError(f"{path}:{n}: {stem} listed again (first on line {seen[stem]})")
            seen[stem] = n
            stems.append(stem)
    return stems


class Sa1bDataset(InstanceDatasetBase):
    """SA-1B images and masks from a folder of ``sa_<N>.jpg`` + ``sa_<N>.json`` (see the module docstring).

    Args:
        img_dir: folder of the images.
        ann_dir: folder of the jsons (default ``img_dir``, the layout of an extracted SA-1B tar).
        subset_file: optional list of file stems to use (one per line), in that order; default every
            ``sa_<N>.jpg`` of ``img_dir`` in number order.
        pipeline: transforms, as for the COCO dataset.
        with_masks: decode the RLE masks.
        max_instances: keep at most this many annotations per image (the first ones); None keeps all.
        resample_empty: when the pipeline leaves no object, draw another random image (training).
        on_error: ``'raise'`` or ``'skip'``.
        max_refetch: attempts when images are skipped.
    """

    def __init__(
        self,
        img_dir: str,
        ann_dir: str | None = None,
        subset_file: str | None = None,
        pipeline: Sequence[Callable] | Callable | None = None,
        with_masks: bool = True,
        max_instances: int | None = None,
        resample_empty: bool = False,
        on_error: str = "raise",
        max_refetch: int = 20,
    ) -> None:
        super().__init__(pipeline=pipeline, on_error=on_error, resample_empty=resample_empty, max_refetch=max_refetch)
        self.img_dir = os.fspath(img_dir)
        self.ann_dir = os.fspath(ann_dir) if ann_dir else self.img_dir
        self.ann_file = self.ann_dir  # named in messages (InstanceDatasetBase._name)
        self.with_masks = with_masks
        self.max_instances = max_instances
        if not os.path.isdir(self.img_dir):
            raise AnnotationError(f"{self.img_dir}: SA-1B image folder not found")
        if subset_file:
            stems = read_subset(os.fspath(subset_file))
        else:
            stems = sorted((n[:-4] for n in os.listdir(self.img_dir) if n.endswith(".jpg") and _STEM.match(n[:-4])),
                           key=lambda s: int(s[3:]))
            if not stems:
                raise AnnotationError(f"{self.img_dir}: no SA-1B images (sa_<number>.jpg)")
        records, missing = [], []
        for stem in stems:
            img, ann = os.path.join(self.img_dir, f"{stem}.jpg"), os.path.join(self.ann_dir, f"{stem}.json")
            absent = [p for p in (img, ann) if not os.path.isfile(p)]
            if absent:
                if on_error == "raise":
                    where = f" (listed in {subset_file})" if subset_file else ""
                    raise AnnotationError(f"{absent[0]}: file not found{where}")
                missing.append(stem)
                continue
            records.append(dict(image_id=int(stem[3:]), file=img, ann_file=ann))
        self._summary("images", len(missing), len(stems), f" without their jpg/json, e.g. {missing[:5]}")
        self.metainfo = dict(classes=["object"], cat_ids=[1])
        self.num_classes = 1
        self._records = records

    # -- reading
    def _err(self, record: dict, msg: str) -> AnnotationError:
        return AnnotationError(f"{record['ann_file']}: {msg}")

    def _read_json(self, record: dict) -> tuple[dict, list]:
        path = record["ann_file"]
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptImageError(f"{path}: cannot read annotation json: {e}") from None
        if not isinstance(data, dict):
            raise self._err(record, f"top level must be an object, got {type(data).__name__}")
        for key in ("image", "annotations"):
            if key not in data:
                raise self._err(record, f"missing top-level key '{key}'")
        image, anns = data["image"], data["annotations"]
        if not isinstance(image, dict) or not isinstance(anns, list):
            raise self._err(record, "'image' must be an object and 'annotations' a list")
        for key in ("image_id", "width", "height"):
            if key not in image:
                raise self._err(record, f"image is missing key '{key}'")
        if image["image_id"] != record["image_id"]:
            raise self._err(record, f"image.image_id {image['image_id']!r} differs from the file name's number "
                                    f"{record['image_id']}")
        return image, anns

    def _check_ann(self, i: int, a: Any, h: int, w: int) -> str | None:
        """Why annotation ``i`` is unusable, or None."""
        if not isinstance(a, dict):
            return f"annotations[{i}] is not an object"
        for key in ANN_KEYS:
            if key not in a:
                return f"annotations[{i}] (id {a.get('id')}) is missing key '{key}'"
        bbox = a["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox)
                or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0):
            return f"annotation id {a['id']}: key 'bbox' must be [x, y, w, h] with w, h >= 0, got {bbox!r}"
        segm = a["segmentation"]
        if not isinstance(segm, dict) or "size" not in segm or "counts" not in segm:
            return f"annotation id {a['id']}: key 'segmentation' must be an RLE {{size, counts}}"
        if list(segm["size"]) != [h, w]:
            return f"annotation id {a['id']}: segmentation size {segm['size']} differs from the image's [{h}, {w}]"
        pts = a.get("point_coords")
        if pts is not None and (not isinstance(pts, list) or not pts or len(pts[0]) != 2):
            return f"annotation id {a['id']}: key 'point_coords' must be [[x, y], ...], got {pts!r}"
        return None

    def load_sample(self, record: dict) -> dict:
        """Record -> ``dict(img=(H, W, 3) uint8 RGB, gt=Instances, meta=ImageMeta)`` in original coordinates."""
        from forge.ops.masks import rle_to_mask, segm_to_rle

        image, anns = self._read_json(record)
        h, w = int(image["height"]), int(image["width"])
        what = f"image id {record['image_id']}, annotations {record['ann_file']}"
        img = load_rgb(record["file"], what)
        if img.shape[:2] != (h, w):
            raise CorruptImageError(f"{record['file']}: image is {img.shape[1]}x{img.shape[0]} but "
                                    f"{record['ann_file']} says {w}x{h}")
        kept = []
        for i, a in enumerate(anns):
            problem = self._check_ann(i, a, h, w)
            if problem is not None:
                if self.on_error == "raise":
                    raise self._err(record, problem + " (on_error='skip' leaves such annotations out)")
                self.skipped["annotations"] += 1
                _log(f"{self._name()}: skipped an annotation of {record['ann_file']}: {problem}")
                continue
            kept.append(a)
        if self.max_instances is not None:
            kept = kept[: int(self.max_instances)]
        if kept:
            boxes = clip_boxes(box_xywh_to_xyxy(torch.tensor([a["bbox"] for a in kept], dtype=torch.float32)), (h, w))
            masks = None
            if self.with_masks:
                try:
                    masks = rle_to_mask([segm_to_rle(a["segmentation"], h, w) for a in kept])
                except (ValueError, TypeError) as e:
                    raise self._err(record, f"cannot decode a segmentation RLE: {e}") from None
            gt = Instances(boxes=boxes, labels=torch.zeros(len(kept), dtype=torch.long), masks=masks,
                           ann_ids=torch.tensor([int(a["id"]) for a in kept], dtype=torch.long))
        else:
            gt = Instances.empty(h, w) if self.with_masks else Instances.empty()

        def column(key: str) -> torch.Tensor:
            return torch.tensor([float(a.get(key, float("nan"))) for a in kept], dtype=torch.float32)

        points = torch.tensor([a["point_coords"][0] if a.get("point_coords") else [float("nan")] * 2 for a in kept],
                              dtype=torch.float32).reshape(-1, 2)
        meta = ImageMeta(image_id=record["image_id"], file_name=record["file"], ori_shape=(h, w), img_shape=(h, w),
                         pad_shape=(h, w),
                         extra=dict(point_coords=points, predicted_iou=column("predicted_iou"),
                                    stability_score=column("stability_score")))
        return dict(img=img, gt=gt, meta=meta)
