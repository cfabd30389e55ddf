"""CrowdHuman (``.odgt``) pedestrian dataset for the NOH-NMS / crowded-detection work.

Items have the same layout as :class:`~forge.data.coco_dataset.CocoInstanceDataset` (box-only: ``gt.masks`` is
None). One class, ``person`` (label 0). Per image:

* ``gt.boxes``: the ``box_type`` boxes (``fbox`` full body by default, or ``vbox`` / ``hbox``) as xyxy pixels;
* ``gt.iscrowd``: CrowdHuman's ignore regions (``tag != 'person'`` such as ``mask``, or ``extra.ignore``; for head
  boxes also ``head_attr.ignore``) -- the reader's rule, the one CrowdDet and the evaluator use;
* ``gt.ann_ids``: ``line * 1000 + index`` (``line`` the 1-based line in the odgt, ``index`` the position in its
  ``gtboxes``), so an id names its source;
* ``meta.extra['ID']`` (CrowdHuman image ID), ``meta.extra['line']``, and for each of ``extra_box_types``
  ``meta.extra[<type>]``: ``(N, 4)`` boxes aligned with ``gt`` and transformed with it (NaN rows where the file
  has no such box).

Full-body boxes of truncated people extend past the image, so boxes are clipped to the image (``clip=True``) and
only a box lying entirely outside, a missing box or a non-positive size is an error (naming file, line and
annotation id; ``on_error='skip'`` drops it and logs the count).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from forge.data.coco_dataset import CorruptImageError, InstanceDatasetBase, _log, _PackedList, load_rgb
from forge.data.crowdhuman_reader import BOX_TYPES, read_gt_odgt, xywh_to_xyxy
from forge.data.structures import ImageMeta, Instances
from forge.ops.boxes import clip_boxes

__all__ = ["CrowdHumanDataset", "CrowdHumanDataError"]

ANN_ID_STRIDE = 1000


class CrowdHumanDataError(ValueError):
    """A CrowdHuman box that cannot be used (message names file, line and annotation id)."""


class CrowdHumanDataset(InstanceDatasetBase):
    """CrowdHuman images ``img_prefix/<ID><img_ext>`` with the boxes of ``ann_file``.

    Args:
        ann_file: ``annotation_train.odgt`` / ``annotation_val.odgt``.
        img_prefix: the ``Images`` folder.
        pipeline: transforms (see ``forge.data.transforms``; masks are None, so crops only clip boxes).
        root: optional folder that relative ``ann_file``/``img_prefix`` are joined to.
        box_type: ``'fbox'`` (full body; NOH-NMS/CrowdDet train on it), ``'vbox'`` or ``'hbox'``.
        extra_box_types: further box types carried along in ``meta.extra``.
        img_ext: image file extension.
        clip: clip boxes to the image.
        filter_empty: leave out images without any non-ignored box (logged).
        resample_empty: when the pipeline leaves no non-ignored box, draw another random image.
        on_error: ``'raise'`` or ``'skip'``.
        max_refetch: attempts before giving up when images are skipped or resampled.
    """

    def __init__(
        self,
        ann_file: str,
        img_prefix: str = "",
        pipeline: Sequence[Callable] | Callable | None = None,
        root: str | None = None,
        box_type: str = "fbox",
        extra_box_types: Sequence[str] = ("vbox",),
        img_ext: str = ".jpg",
        clip: bool = True,
        filter_empty: bool = False,
        resample_empty: bool = False,
        on_error: str = "raise",
        max_refetch: int = 20,
    ) -> None:
        super().__init__(pipeline=pipeline, on_error=on_error, resample_empty=resample_empty, max_refetch=max_refetch)
        for t in (box_type, *extra_box_types):
            if t not in BOX_TYPES:
                raise ValueError(f"CrowdHumanDataset: box types must be in {BOX_TYPES}, got {t!r}")
        if root:
            ann_file = ann_file if os.path.isabs(ann_file) else os.path.join(root, ann_file)
            img_prefix = img_prefix if os.path.isabs(img_prefix) else os.path.join(root, img_prefix)
        self.ann_file = os.fspath(ann_file)
        self.img_prefix = os.fspath(img_prefix)
        self.box_type = box_type
        self.extra_box_types = tuple(t for t in extra_box_types if t != box_type)
        self.img_ext = img_ext
        self.clip = clip
        self.metainfo = dict(classes=["person"], cat_ids=[1])
        self.num_classes = 1

        records = []
        bad: list[int] = []
        total = 0
        dropped_empty = 0
        for index, rec in enumerate(read_gt_odgt(self.ann_file)):
            if len(rec) >= ANN_ID_STRIDE:
                raise CrowdHumanDataError(
                    f"{self.ann_file}:{rec.line}: {len(rec)} boxes in one image; "
                    f"annotation ids assume fewer than {ANN_ID_STRIDE}"
                )
            boxes = xywh_to_xyxy(rec.boxes(box_type))
            ignore = rec.ignore_flags(box_type)
            keep = []
            for i in range(len(rec)):
                total += 1
                problem = self._problem(boxes[i], rec.width, rec.height)
                if problem is not None:
                    ann_id = rec.line * ANN_ID_STRIDE + i
                    if on_error == "raise":
                        raise CrowdHumanDataError(
                            f"{self.ann_file}:{rec.line}: gtboxes[{i}] (annotation id {ann_id}, ID {rec.ID!r}): "
                            f"{problem} (on_error='skip' leaves such boxes out)"
                        )
                    bad.append(ann_id)
                    continue
                keep.append(i)
            if filter_empty and not any(not ignore[i] for i in keep):
                dropped_empty += 1
                continue
            sel = np.asarray(keep, dtype=np.int64)
            records.append(
                dict(
                    index=index,
                    ID=rec.ID,
                    line=rec.line,
                    file=os.path.join(self.img_prefix, rec.ID + img_ext),
                    width=rec.width,
                    height=rec.height,
                    boxes=boxes[sel].astype(np.float32),
                    ignore=ignore[sel],
                    ann_ids=rec.line * ANN_ID_STRIDE + sel,
                    extra={t: xywh_to_xyxy(rec.boxes(t))[sel].astype(np.float32) for t in self.extra_box_types},
                )
            )
        detail = f", ids {bad[:10]}{' ...' if len(bad) > 10 else ''}" if bad else ""
        self._summary("annotations", len(bad), total, f" (missing, empty or outside the image{detail})")
        if filter_empty and dropped_empty:
            _log(f"{self._name()}: left out {dropped_empty} images without non-ignored boxes (filter_empty)")
        self._records = _PackedList(records)

    def _problem(self, box: np.ndarray, width: float | None, height: float | None) -> str | None:
        if not np.isfinite(box).all():
            return f"has no {self.box_type!r}"
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            return f"{self.box_type} {[x1, y1, x2 - x1, y2 - y1]} has a non-positive size"
        if width is not None and height is not None:
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                return f"{self.box_type} {[x1, y1, x2 - x1, y2 - y1]} lies outside the {width:g}x{height:g} image"
            if not self.clip and (x1 < 0 or y1 < 0 or x2 > width or y2 > height):
                return f"{self.box_type} {[x1, y1, x2 - x1, y2 - y1]} extends past the {width:g}x{height:g} image"
        return None

    def load_sample(self, record: dict) -> dict:
        """Record -> ``dict(img=(H, W, 3) uint8 RGB, gt, meta, extra_boxes)`` in original-image pixels."""
        ann_ids = record["ann_ids"]
        what = f"ID {record['ID']!r}, {self.ann_file}:{record['line']}"
        img = load_rgb(record["file"], what)
        h, w = img.shape[:2]
        if record["width"] is not None and (
            not math.isclose(record["width"], w) or not math.isclose(record["height"], h)
        ):
            raise CorruptImageError(
                f"{record['file']}: image is {w}x{h} but the odgt says {record['width']:g}x{record['height']:g} "
                f"({what})"
            )
        boxes = torch.from_numpy(record["boxes"]).reshape(-1, 4)
        keep = torch.ones(boxes.shape[0], dtype=torch.bool)
        if record["width"] is None and boxes.shape[0]:
            # size only known now: apply the outside-the-image check that __init__ could not
            for i, box in enumerate(record["boxes"]):
                problem = self._problem(box, w, h)
                if problem is not None:
                    msg = f"{self.ann_file}:{record['line']}: annotation id {int(ann_ids[i])} ({what}): {problem}"
                    if self.on_error == "raise":
                        raise CrowdHumanDataError(msg)
                    self.skipped["annotations"] += 1
                    _log(f"{self._name()}: skipped a box: {msg}")
                    keep[i] = False
        extra = {t: torch.from_numpy(v).reshape(-1, 4) for t, v in record["extra"].items()}
        if self.clip:
            boxes = clip_boxes(boxes, (h, w))
            extra = {t: clip_boxes(v, (h, w)) for t, v in extra.items()}
        gt = Instances(
            boxes=boxes,
            labels=torch.zeros(boxes.shape[0], dtype=torch.long),
            masks=None,
            iscrowd=torch.from_numpy(np.asarray(record["ignore"], dtype=bool)),
            ann_ids=torch.from_numpy(np.asarray(ann_ids, dtype=np.int64)),
        )
        extra = {t: v[keep] for t, v in extra.items()}
        meta = ImageMeta(
            image_id=int(record["index"]),
            file_name=record["file"],
            ori_shape=(h, w),
            img_shape=(h, w),
            pad_shape=(h, w),
            extra=dict(ID=record["ID"], line=record["line"]),
        )
        return dict(img=img, gt=gt[keep], meta=meta, extra_boxes=extra)

