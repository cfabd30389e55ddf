"""Read and validate COCO / LVIS instance annotations.

API summary::

    from forge.data.coco_reader import CocoAnnotations, LvisAnnotations, AnnotationError

    coco = CocoAnnotations.load("instances_val2017.json")   # path (str/Path) or an already-loaded dict
    coco.source                  # file name used in error messages ('<dict>' for dicts)
    coco.image_ids               # list[int], in file order
    coco.images[img_id]          # the image dict ('id', 'width', 'height', 'file_name', ...)
    coco.anns(img_id)            # list of annotation dicts of that image ([] if none)
    coco.anns_by_image           # dict[int, list[dict]] (only images that have annotations)
    coco.categories              # list of category dicts, sorted by id
    coco.cat_ids                 # sorted category ids
    coco.class_names             # tuple of names, index = contiguous label
    coco.cat_id_to_label[cid]    # contiguous label 0..C-1 (works for non-consecutive ids, e.g. COCO's 1..90)
    coco.label_to_cat_id[label]  # inverse
    coco.to_instances(img_id, with_masks=False)   # forge.data.structures.Instances in original-image pixels
    coco.dataset                 # the raw dict (validated; missing 'area'/'iscrowd' filled in, see below)

    lvis = LvisAnnotations.load("lvis_v1_val.json")       # everything above, plus
    lvis.neg_cat_ids(img_id)             # categories verified absent from the image
    lvis.not_exhaustive_cat_ids(img_id)  # categories whose instances are not all annotated
    lvis.cat_frequency[cid]              # 'r' | 'c' | 'f'

Validation (errors are :class:`AnnotationError`, a ``ValueError``, naming the file and the image/annotation/
category id or key at fault): required keys (``images``/``annotations``/``categories``; image ``id``/``width``/
``height``; annotation ``id``/``image_id``/``category_id``/``bbox``; category ``id``/``name``), duplicate ids,
annotations pointing at an unknown image or category, malformed/non-finite/negative bboxes, malformed
segmentations (wrong types, odd polygon lengths, RLE size different from the image size), ``iscrowd`` not 0/1.

Zero-size bboxes (``w == 0`` or ``h == 0``) are handled by ``degenerate``: ``'error'`` (default), ``'keep'`` (what
evaluation needs: pycocotools counts them as ground truth) or ``'drop'`` (what training usually wants); the ids are
listed in :attr:`CocoAnnotations.degenerate_ann_ids` either way.

Missing fields are filled in place, as documented here: ``iscrowd`` defaults to 0 (LVIS has none); a missing
``area`` becomes the segmentation's pixel area, or ``w * h`` for box-only annotations (evaluation needs it for the
small/medium/large buckets). Annotation id 0 is accepted but warned about: COCO evaluation uses 0 as "unmatched".
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported only by to_instances(): evaluation tools read files without it
    from forge.data.structures import Instances

__all__ = ["AnnotationError", "CocoAnnotations", "LvisAnnotations"]

LVIS_FREQUENCIES = ("r", "c", "f")


class AnnotationError(ValueError):
    """Bad annotation file content; the message names the file and the element at fault."""


def _load_json(source: str | os.PathLike | Mapping) -> tuple[dict, str]:
    if isinstance(source, Mapping):
        return dict(source), "<dict>"
    path = Path(source)
    try:
        with open(path, encoding="utf-8") as f:  # JSON is UTF-8 (RFC 8259), whatever the locale
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                              "a JSON annotation file must be UTF-8") from None
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    return data, str(path)


_NUM_TYPES = (int, float)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class CocoAnnotations:
    """A validated COCO instances file. Build with :meth:`load`; see the module docstring for the API."""

    #: keys every image / annotation / category must have
    IMAGE_KEYS = ("id", "width", "height")
    ANN_KEYS = ("id", "image_id", "category_id", "bbox")
    CAT_KEYS = ("id", "name")

    def __init__(self, dataset: dict, source: str = "<dict>", degenerate: str = "error") -> None:
        if degenerate not in ("error", "keep", "drop"):
            raise ValueError(f"degenerate must be 'error', 'keep' or 'drop', got {degenerate!r}")
        self.dataset = dataset
        self.source = source
        self.degenerate = degenerate
        self.degenerate_ann_ids: list[int] = []
        self._validate()

    @classmethod
    def load(cls, source: str | os.PathLike | Mapping, degenerate: str = "error") -> CocoAnnotations:
        """Read ``source`` (a json path or a dict; a dict is shallow-copied, its annotations edited in place)."""
        data, name = _load_json(source)
        return cls(data, name, degenerate=degenerate)

    # ------------------------------------------------------------------ validation
    def _err(self, msg: str) -> AnnotationError:
        return AnnotationError(f"{self.source}: {msg}")

    def _validate(self) -> None:
        d = self.dataset
        for key in ("images", "annotations", "categories"):
            if key not in d:
                raise self._err(f"missing top-level key '{key}'")
            if not isinstance(d[key], list):
                raise self._err(f"'{key}' must be a list, got {type(d[key]).__name__}")
        self._validate_categories(d["categories"])
        self._validate_images(d["images"])
        self._validate_annotations(d["annotations"])

    def _validate_categories(self, cats: list) -> None:
        by_id: dict[int, dict] = {}
        for i, c in enumerate(cats):
            if not isinstance(c, dict):
                raise self._err(f"categories[{i}] is not an object")
            for k in self.CAT_KEYS:
                if k not in c:
                    raise self._err(f"category at index {i} (id={c.get('id')}) is missing key '{k}'")
            if not _is_int(c["id"]):
                raise self._err(f"category at index {i} has a non-integer id {c['id']!r}")
            if c["id"] in by_id:
                raise self._err(f"duplicate category id {c['id']}")
            by_id[c["id"]] = c
        if not by_id:
            raise self._err("'categories' is empty")
        self.cats: dict[int, dict] = by_id
        self.cat_ids: list[int] = sorted(by_id)
        self.categories: list[dict] = [by_id[c] for c in self.cat_ids]
        self.class_names: tuple[str, ...] = tuple(str(by_id[c]["name"]) for c in self.cat_ids)
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id: dict[int, int] = {i: c for i, c in enumerate(self.cat_ids)}

    def _validate_images(self, imgs: list) -> None:
        images: dict[int, dict] = {}
        for i, img in enumerate(imgs):
            if not isinstance(img, dict):
                raise self._err(f"images[{i}] is not an object")
            for k in self.IMAGE_KEYS:
                if k not in img:
                    raise self._err(f"image at index {i} (id={img.get('id')}) is missing key '{k}'")
            if not _is_int(img["id"]):
                raise self._err(f"image at index {i} has a non-integer id {img['id']!r}")
            if img["id"] in images:
                raise self._err(f"duplicate image id {img['id']}")
            for k in ("width", "height"):
                if not _is_int(img[k]) or img[k] <= 0:
                    raise self._err(f"image id {img['id']}: '{k}' must be a positive integer, got {img[k]!r}")
            images[img["id"]] = img
        self.images: dict[int, dict] = images
        self.image_ids: list[int] = [img["id"] for img in imgs]

    def _validate_segmentation(self, ann: dict, img: dict) -> None:
        segm = ann["segmentation"]
        aid = ann["id"]
        if isinstance(segm, list):
            for j, poly in enumerate(segm):
                # fast path (type check per value, finiteness of the sum) before the precise error
                if (
                    not isinstance(poly, list)
                    or not all(type(v) in _NUM_TYPES for v in poly)
                    or not math.isfinite(sum(poly))
                ):
                    raise self._err(f"annotation id {aid}: segmentation polygon {j} is not a list of finite numbers")
                if len(poly) % 2:
                    raise self._err(f"annotation id {aid}: segmentation polygon {j} has an odd length {len(poly)}")
        elif isinstance(segm, dict):
            if "size" not in segm or "counts" not in segm:
                raise self._err(f"annotation id {aid}: RLE segmentation needs 'size' and 'counts'")
            size = list(segm["size"])
            if size != [img["height"], img["width"]]:
                raise self._err(
                    f"annotation id {aid}: RLE size {size} differs from image {img['id']} size "
                    f"[{img['height']}, {img['width']}]"
                )
            if not isinstance(segm["counts"], (str, bytes, list)):
                raise self._err(f"annotation id {aid}: RLE 'counts' must be a string or a list")
        else:
            raise self._err(
                f"annotation id {aid}: segmentation must be polygons or an RLE dict, got {type(segm).__name__}"
            )

    def _validate_annotations(self, anns: list) -> None:
        seen: set[int] = set()
        by_image: dict[int, list[dict]] = {}
        kept: list[dict] = []
        for i, ann in enumerate(anns):
            if not isinstance(ann, dict):
                raise self._err(f"annotations[{i}] is not an object")
            for k in self.ANN_KEYS:
                if k not in ann:
                    raise self._err(f"annotation at index {i} (id={ann.get('id')}) is missing key '{k}'")
            aid = ann["id"]
            if not _is_int(aid):
                raise self._err(f"annotation at index {i} has a non-integer id {aid!r}")
            if aid in seen:
                raise self._err(f"duplicate annotation id {aid}")
            seen.add(aid)
            img = self.images.get(ann["image_id"])
            if img is None:
                raise self._err(f"annotation id {aid} refers to unknown image_id {ann['image_id']!r}")
            if ann["category_id"] not in self.cats:
                raise self._err(f"annotation id {aid} refers to unknown category_id {ann['category_id']!r}")
            bbox = ann["bbox"]
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
                raise self._err(f"annotation id {aid}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
            if bbox[2] < 0 or bbox[3] < 0:
                raise self._err(f"annotation id {aid}: bbox has a negative width/height {list(bbox)}")
            crowd = ann.setdefault("iscrowd", 0)
            if crowd not in (0, 1):
                raise self._err(f"annotation id {aid}: iscrowd must be 0 or 1, got {crowd!r}")
            if "segmentation" in ann:
                self._validate_segmentation(ann, img)
            if "area" not in ann:
                ann["area"] = self._area_of(ann, img)
            elif not _is_number(ann["area"]) or ann["area"] < 0:
                raise self._err(f"annotation id {aid}: area must be a non-negative number, got {ann['area']!r}")
            if bbox[2] == 0 or bbox[3] == 0:
                self.degenerate_ann_ids.append(aid)
                if self.degenerate == "error":
                    raise self._err(
                        f"annotation id {aid}: degenerate bbox {list(bbox)} (zero width or height); "
                        "load with degenerate='keep' or 'drop'"
                    )
                if self.degenerate == "drop":
                    continue
            kept.append(ann)
            by_image.setdefault(ann["image_id"], []).append(ann)
        if self.degenerate == "drop" and len(kept) != len(anns):
            self.dataset["annotations"] = kept
        if 0 in seen:
            warnings.warn(
                f"{self.source}: annotation id 0 found; COCO evaluation treats id 0 as 'unmatched'", stacklevel=3
            )
        self.anns_by_image: dict[int, list[dict]] = by_image

    @staticmethod
    def _area_of(ann: dict, img: dict) -> float:
        if "segmentation" in ann:
            import pycocotools.mask as mask_api

            segm, h, w = ann["segmentation"], img["height"], img["width"]
            if isinstance(segm, list):
                parts = [p for p in segm if len(p) >= 6]
                if not parts:
                    return 0.0
                rle = mask_api.merge(mask_api.frPyObjects(parts, h, w))
            elif isinstance(segm["counts"], list):
                rle = mask_api.frPyObjects(segm, h, w)
            else:
                rle = {"size": segm["size"], "counts": segm["counts"]}
                if isinstance(rle["counts"], str):
                    rle["counts"] = rle["counts"].encode("ascii")
            return float(mask_api.area(rle))
        return float(ann["bbox"][2] * ann["bbox"][3])

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def anns(self, image_id: int) -> list[dict]:
        """Annotations of ``image_id`` (``[]`` for an image without any); unknown ids raise ``KeyError``."""
        if image_id not in self.images:
            raise KeyError(f"{self.source}: unknown image id {image_id!r}")
        return self.anns_by_image.get(image_id, [])

    def to_instances(self, image_id: int, with_masks: bool = False) -> Instances:
        """Ground truth of one image as :class:`Instances` (original-image pixels, contiguous labels).

        With ``with_masks=True`` every annotation needs a ``segmentation``; masks are ``(N, H, W)`` bool.
        """
        import torch

        from forge.data.structures import Instances

        anns = self.anns(image_id)
        img = self.images[image_id]
        h, w = img["height"], img["width"]
        if not anns:
            inst = Instances.empty(h, w) if with_masks else Instances.empty()
            return inst
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.long)
        iscrowd = torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool)
        ann_ids = torch.tensor([a["id"] for a in anns], dtype=torch.long)
        masks = None
        if with_masks:
            from forge.ops.masks import rle_to_mask, segm_to_rle

            missing = [a["id"] for a in anns if "segmentation" not in a]
            if missing:
                raise self._err(f"annotation id {missing[0]} has no 'segmentation' but masks were requested")
            masks = rle_to_mask([segm_to_rle(a["segmentation"], h, w) for a in anns])
        return Instances(boxes=boxes, labels=labels, masks=masks, iscrowd=iscrowd, ann_ids=ann_ids)


class LvisAnnotations(CocoAnnotations):
    """A validated LVIS file: COCO layout plus federated-annotation fields.

    Images must carry ``neg_category_ids`` and ``not_exhaustive_category_ids`` (lists of known category ids);
    categories must carry ``frequency`` in ``'r' | 'c' | 'f'``. Annotations have no ``iscrowd`` (0 is filled in).
    """

    def _validate(self) -> None:
        super()._validate()
        freq: dict[int, str] = {}
        for c in self.categories:
            f = c.get("frequency")
            if f not in LVIS_FREQUENCIES:
                raise self._err(f"category id {c['id']}: 'frequency' must be one of r/c/f, got {f!r}")
            freq[c["id"]] = f
        self.cat_frequency: dict[int, str] = freq
        for img in self.images.values():
            for key in ("neg_category_ids", "not_exhaustive_category_ids"):
                if key not in img:
                    raise self._err(f"image id {img['id']} is missing key '{key}'")
                ids = img[key]
                if not isinstance(ids, list):
                    raise self._err(f"image id {img['id']}: '{key}' must be a list")
                for cid in ids:
                    if cid not in self.cats:
                        raise self._err(f"image id {img['id']}: '{key}' contains unknown category id {cid!r}")
        for ann in self.dataset["annotations"]:
            if ann.get("iscrowd", 0):
                raise self._err(f"annotation id {ann['id']}: LVIS has no crowd annotations (iscrowd=1)")

    def neg_cat_ids(self, image_id: int) -> list[int]:
        """Categories verified to be absent from ``image_id`` (detections of them count as false positives)."""
        return list(self.images[image_id]["neg_category_ids"])

    def not_exhaustive_cat_ids(self, image_id: int) -> list[int]:
        """Categories whose instances in ``image_id`` are not all annotated (unmatched detections are ignored)."""
        return list(self.images[image_id]["not_exhaustive_category_ids"])
