"""COCO-format and LVIS instance datasets (boxes, polygon/RLE masks, crowd flags) on top of ``coco_reader``.

An item is ``dict(inputs=Tensor(3, H, W), data_samples=DetSample)`` where ``inputs`` holds RGB pixel values
(uint8 as read, float32 if the pipeline computed in float; never normalised: the model's data preprocessor owns
mean, std and channel order), ``DetSample.gt`` the ground truth in network-input coordinates (boxes xyxy px,
contiguous labels, masks ``(N, H, W)`` bool at the input size, ``iscrowd``, ``ann_ids``) and ``DetSample.meta`` the
:class:`~forge.data.structures.ImageMeta`. See ``forge.data.transforms`` for the pipeline and ``docs/data.md``.

Bad data is never dropped silently. With ``on_error='raise'`` (default) an unreadable/corrupt image raises
:class:`CorruptImageError` naming the file, the image id and its annotation ids, and an annotation outside its image
raises :class:`~forge.data.coco_reader.AnnotationError` naming the annotation file, the annotation id and the image
file. With ``on_error='skip'`` such annotations are left out when the dataset is built and corrupt images are
replaced by the next image when read; both are counted and reported with mmengine's ``print_log``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from forge.data.coco_reader import AnnotationError, CocoAnnotations, LvisAnnotations
from forge.data.structures import ImageMeta, Instances
from forge.data.transforms import Compose, pack_sample
from forge.ops.boxes import box_xywh_to_xyxy, clip_boxes

__all__ = [
    "CorruptImageError",
    "InstanceDatasetBase",
    "CocoInstanceDataset",
    "LvisInstanceDataset",
    "load_rgb",
    "pack_sample",
]

ON_ERROR = ("raise", "skip")


class CorruptImageError(ValueError):
    """An image file is missing, unreadable or does not match its annotation (message names file and ids)."""


def _log(msg: str, level: int = logging.WARNING) -> None:
    from mmengine.logging import print_log

    print_log(msg, logger="current", level=level)


def _encloses_nothing(segm) -> bool:
    """A polygon segmentation without any part of 3 or more points (it rasterises to an empty mask)."""
    return isinstance(segm, list) and not any(len(part) >= 6 for part in segm)


def load_rgb(path: str, what: str = "") -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (grey, palette, CMYK and alpha images are converted).

    Raises:
        CorruptImageError: the file is missing, truncated or not an image; ``what`` is appended to the message
            (e.g. the image and annotation ids).
    """
    from PIL import Image, UnidentifiedImageError

    suffix = f" ({what})" if what else ""
    if not os.path.isfile(path):
        raise CorruptImageError(f"{path}: image file not found{suffix}")
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.array(im.convert("RGB"))  # a writable copy (torch.from_numpy needs one)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise CorruptImageError(f"{path}: cannot read image{suffix}: {e}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CorruptImageError(f"{path}: decoded to an unusable array of shape {arr.shape}{suffix}")
    return arr


class _PackedList:
    """A list of records stored as one pickled byte buffer, so that data-loader workers share it copy-on-write
    instead of touching (and copying) millions of Python objects."""

    def __init__(self, items: Sequence[Any]) -> None:
        blobs = [pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL) for x in items]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buf = np.frombuffer(b"".join(blobs), dtype=np.uint8) if blobs else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return int(self._ends.shape[0])

    def __getitem__(self, i: int) -> Any:
        start = 0 if i == 0 else int(self._ends[i - 1])
        return pickle.loads(self._buf[start : int(self._ends[i])].tobytes())


class InstanceDatasetBase(Dataset):
    """Shared machinery: the pipeline, error policy, refetching and packing. Subclasses fill ``self._records``
    (a sequence of dict records) and implement :meth:`load_sample` (record -> un-transformed sample dict)."""

    def __init__(
        self,
        pipeline: Sequence[Callable] | Callable | None = None,
        on_error: str = "raise",
        resample_empty: bool = False,
        max_refetch: int = 20,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"{type(self).__name__}: on_error must be one of {ON_ERROR}, got {on_error!r}")
        if pipeline is None or callable(pipeline):
            self.pipeline = pipeline
        else:
            self.pipeline = Compose(list(pipeline))
        self.on_error = on_error
        self.resample_empty = resample_empty
        self.max_refetch = int(max_refetch)
        self.skipped: dict[str, int] = {"annotations": 0, "images": 0}
        self._records: Sequence[dict] = []

    # -- to implement
    def load_sample(self, record: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- common
    def __len__(self) -> int:
        return len(self._records)

    def get_record(self, i: int) -> dict:
        """The stored (un-transformed) record of item ``i``."""
        return self._records[i]

    def _name(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'ann_file', '')})"

    def _summary(self, what: str, count: int, total: int, detail: str = "") -> None:
        if count:
            self.skipped[what] = self.skipped.get(what, 0) + count
            _log(f"{self._name()}: skipped {count} of {total} {what} (on_error='skip'){detail}")

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self._name()}: index {i} out of range for {len(self)} images")
        idx = i % len(self)
        for _ in range(self.max_refetch + 1):
            try:
                sample = self.load_sample(self._records[idx])
            except CorruptImageError as e:
                if self.on_error == "raise":
                    raise
                self.skipped["images"] += 1
                _log(
                    f"{self._name()}: skipped corrupt image, {self.skipped['images']} so far in this process "
                    f"(on_error='skip'): {e}"
                )
                idx = (idx + 1) % len(self)
                continue
            if self.pipeline is not None:
                sample = self.pipeline(sample)
            gt: Instances = sample["gt"]
            if self.resample_empty and not bool((~gt.iscrowd.bool()).any()):
                # YOLACT resamples a random image when augmentation leaves no ground truth
                idx = int(np.random.randint(len(self)))
                continue
            return pack_sample(sample)
        raise RuntimeError(
            f"{self._name()}: no usable sample after {self.max_refetch + 1} attempts starting at index {i} "
            f"(corrupt images or augmentation leaving no objects)"
        )


class CocoInstanceDataset(InstanceDatasetBase):
    """COCO-format instances: boxes, polygon or RLE masks, crowd flags; category ids (any, e.g. 1, 2, 4, 7) map
    to contiguous labels ``0..C-1`` in sorted id order (``metainfo['cat_ids'][label]`` is the category id).

    Args:
        ann_file: the instances json.
        img_prefix: folder the images' ``file_name`` is relative to.
        pipeline: transforms (a list of callables or one callable, see ``forge.data.transforms``); None gives the
            original uint8 image.
        root: optional folder that relative ``ann_file``/``img_prefix`` are joined to.
        with_masks: decode masks (every annotation then needs a ``segmentation``).
        filter_empty: leave out images without any non-crowd annotation (training; YOLACT only trains on images
            with annotations). The count is logged.
        resample_empty: when the pipeline leaves no non-crowd object, draw another random image (YOLACT).
        on_error: ``'raise'`` or ``'skip'`` (see the module docstring).
        bound_tol: pixels a bbox/polygon may extend past the image before it counts as out of bounds; boxes within
            the tolerance are clipped to the image.
        degenerate: zero-width/height boxes, passed to the reader: ``'drop'`` (default; the count is logged),
            ``'keep'`` or ``'error'``.
        verify_images: open every image when the dataset is built (slow on big sets); with ``on_error='skip'``
            unreadable images are left out up front (use it for evaluation sets, where substituting another image
            would duplicate it).
        classes: expected class names in category-id order; a mismatch with the file raises (catches a config
            pointing at the wrong file).
        max_refetch: attempts before giving up when images are skipped or resampled.
    """

    reader_cls: type[CocoAnnotations] = CocoAnnotations

    def __init__(
        self,
        ann_file: str,
        img_prefix: str = "",
        pipeline: Sequence[Callable] | Callable | None = None,
        root: str | None = None,
        with_masks: bool = True,
        filter_empty: bool = False,
        resample_empty: bool = False,
        on_error: str = "raise",
        bound_tol: float = 1.0,
        degenerate: str = "drop",
        verify_images: bool = False,
        classes: Sequence[str] | None = None,
        max_refetch: int = 20,
    ) -> None:
        super().__init__(pipeline=pipeline, on_error=on_error, resample_empty=resample_empty, max_refetch=max_refetch)
        if root:
            ann_file = ann_file if os.path.isabs(ann_file) else os.path.join(root, ann_file)
            img_prefix = img_prefix if os.path.isabs(img_prefix) else os.path.join(root, img_prefix)
        self.ann_file = os.fspath(ann_file)
        self.img_prefix = os.fspath(img_prefix)
        self.with_masks = with_masks
        self.bound_tol = float(bound_tol)

        anns = self.reader_cls.load(self.ann_file, degenerate=degenerate)
        if anns.degenerate_ann_ids and degenerate == "drop":
            ids = anns.degenerate_ann_ids
            _log(
                f"{self._name()}: dropped {len(ids)} annotations with zero-size boxes (degenerate='drop'), "
                f"ids {ids[:10]}{' ...' if len(ids) > 10 else ''}"
            )
        if classes is not None and list(classes) != list(anns.class_names):
            raise ValueError(
                f"{self.ann_file}: categories {list(anns.class_names)} (in id order) differ from the configured "
                f"classes {list(classes)}"
            )
        self.metainfo = self._metainfo(anns)
        self.cat_id_to_label = dict(anns.cat_id_to_label)
        self.num_classes = anns.num_classes
        records, dropped_empty = self._build_records(anns, filter_empty)
        if verify_images:
            records = self._verify(records)
        if filter_empty and dropped_empty:
            _log(
                f"{self._name()}: left out {dropped_empty} images without non-crowd annotations (filter_empty)",
                level=logging.INFO,
            )
        self._records = _PackedList(records)

    # -- building
    @staticmethod
    def _metainfo(anns: CocoAnnotations) -> dict:
        return dict(classes=list(anns.class_names), cat_ids=list(anns.cat_ids))

    def _file_of(self, img: dict) -> str:
        if "file_name" not in img:
            raise AnnotationError(f"{self.ann_file}: image id {img['id']} has no 'file_name'")
        return os.path.join(self.img_prefix, img["file_name"])

    def _out_of_bounds(self, ann: dict, w: int, h: int) -> str | None:
        x, y, bw, bh = ann["bbox"]
        tol = self.bound_tol
        if x < -tol or y < -tol or x + bw > w + tol or y + bh > h + tol:
            return f"bbox {list(ann['bbox'])} lies outside the {w}x{h} image"
        segm = ann.get("segmentation")
        if isinstance(segm, list):
            for poly in segm:
                if len(poly) < 2:
                    continue
                xs, ys = poly[0::2], poly[1::2]
                if min(xs) < -tol or min(ys) < -tol or max(xs) > w + tol or max(ys) > h + tol:
                    return f"segmentation polygon lies outside the {w}x{h} image"
        return None

    def _build_records(self, anns: CocoAnnotations, filter_empty: bool) -> tuple[list[dict], int]:
        records: list[dict] = []
        bad: list[int] = []
        total = 0
        dropped_empty = 0
        no_area: list[int] = []
        for image_id in anns.image_ids:
            img = anns.images[image_id]
            w, h = img["width"], img["height"]
            file_name = self._file_of(img)
            kept = []
            for a in anns.anns(image_id):
                total += 1
                problem = self._out_of_bounds(a, w, h)
                if problem is not None:
                    if self.on_error == "raise":
                        raise AnnotationError(
                            f"{self.ann_file}: annotation id {a['id']} (image id {image_id}, file {file_name}): "
                            f"{problem} (on_error='skip' leaves such annotations out)"
                        )
                    bad.append(a["id"])
                    continue
                if self.with_masks and "segmentation" not in a:
                    raise AnnotationError(
                        f"{self.ann_file}: annotation id {a['id']} (image id {image_id}) has no 'segmentation' "
                        "(set with_masks=false for box-only data)"
                    )
                if self.with_masks and _encloses_nothing(a["segmentation"]):
                    no_area.append(int(a["id"]))
                kept.append(
                    (
                        int(a["id"]),
                        [float(v) for v in a["bbox"]],
                        self.cat_id_to_label[a["category_id"]],
                        bool(a.get("iscrowd", 0)),
                        a.get("segmentation") if self.with_masks else None,
                    )
                )
            if filter_empty and not any(not k[3] for k in kept):
                dropped_empty += 1
                continue
            records.append(dict(image_id=image_id, file=file_name, width=w, height=h, anns=kept))
        detail = f", ids {bad[:10]}{' ...' if len(bad) > 10 else ''}" if bad else ""
        self._summary("annotations", len(bad), total, f" lying outside their image{detail}")
        if no_area:
            _log(
                f"{self._name()}: {len(no_area)} of {total} annotations have a segmentation that encloses no area "
                f"(empty, or polygons of fewer than 3 points), ids {no_area[:10]}"
                f"{' ...' if len(no_area) > 10 else ''}: "
                "kept with an empty mask; a Resize/crop that recomputes boxes from masks gives them a zero box, "
                "which FilterSmallBoxes drops"
            )
        self.empty_mask_ann_ids = no_area
        return records, dropped_empty

    def _verify(self, records: list[dict]) -> list[dict]:
        kept = []
        for r in records:
            try:
                self._read_image(r)
            except CorruptImageError:
                if self.on_error == "raise":
                    raise
                continue
            kept.append(r)
        self._summary("images", len(records) - len(kept), len(records), " that cannot be read (verify_images)")
        return kept

    # -- reading
    def _read_image(self, record: dict) -> np.ndarray:
        ids = [a[0] for a in record["anns"]]
        what = f"image id {record['image_id']}, annotation ids {ids[:10]}{' ...' if len(ids) > 10 else ''}"
        img = load_rgb(record["file"], what)
        if img.shape[:2] != (record["height"], record["width"]):
            raise CorruptImageError(
                f"{record['file']}: image is {img.shape[1]}x{img.shape[0]} but {self.ann_file} says "
                f"{record['width']}x{record['height']} ({what})"
            )
        return img

    def load_sample(self, record: dict) -> dict:
        """Record -> ``dict(img=(H, W, 3) uint8 RGB, gt=Instances, meta=ImageMeta)`` in original coordinates."""
        from forge.ops.masks import rle_to_mask, segm_to_rle

        img = self._read_image(record)
        h, w = record["height"], record["width"]
        anns = record["anns"]
        if anns:
            xywh = torch.tensor([a[1] for a in anns], dtype=torch.float32).reshape(-1, 4)
            boxes = clip_boxes(box_xywh_to_xyxy(xywh), (h, w))
            masks = None
            if self.with_masks:
                masks = rle_to_mask([segm_to_rle(a[4], h, w) for a in anns])
            gt = Instances(
                boxes=boxes,
                labels=torch.tensor([a[2] for a in anns], dtype=torch.long),
                masks=masks,
                iscrowd=torch.tensor([a[3] for a in anns], dtype=torch.bool),
                ann_ids=torch.tensor([a[0] for a in anns], dtype=torch.long),
            )
        else:
            gt = Instances.empty(h, w) if self.with_masks else Instances.empty()
        meta = ImageMeta(
            image_id=record["image_id"],
            file_name=record["file"],
            ori_shape=(h, w),
            img_shape=(h, w),
            pad_shape=(h, w),
        )
        return dict(img=img, gt=gt, meta=meta)


class LvisInstanceDataset(CocoInstanceDataset):
    """LVIS (v0.5/v1) instances: same items as :class:`CocoInstanceDataset`, read with ``LvisAnnotations``.

    LVIS v1 images carry ``coco_url`` instead of ``file_name``; the file is then
    ``img_prefix/<split>2017/<name>.jpg`` taken from the url, so ``img_prefix`` is the COCO image root (holding
    ``train2017/`` and ``val2017/``). ``metainfo`` adds ``frequencies`` (``'r'|'c'|'f'`` per class).
    """

    reader_cls = LvisAnnotations

    @staticmethod
    def _metainfo(anns: CocoAnnotations) -> dict:
        info = CocoInstanceDataset._metainfo(anns)
        info["frequencies"] = [anns.cat_frequency[c] for c in anns.cat_ids]  # type: ignore[attr-defined]
        return info

    def _file_of(self, img: dict) -> str:
        if "file_name" in img:
            return os.path.join(self.img_prefix, img["file_name"])
        url = img.get("coco_url")
        if not url:
            raise AnnotationError(f"{self.ann_file}: image id {img['id']} has neither 'file_name' nor 'coco_url'")
        parts = str(url).rstrip("/").split("/")
        return os.path.join(self.img_prefix, *parts[-2:])
