"""Semantic-segmentation datasets in their usual on-disk layouts (those of mmsegmentation's converters).

* :class:`VOCSegDataset` -- PASCAL VOC 2012 (+ SBD "aug"): ``VOC2012/JPEGImages/*.jpg``,
  ``SegmentationClass/*.png`` (palette PNGs: 0 background, 1..20, 255 void) and ``SegmentationClassAug/*.png``
  (SBD converted to the same values), split lists ``ImageSets/Segmentation/{train,val,aug,trainaug}.txt``.
  ``with_background=False`` (default, the MaskCLIP protocol "VOC-20"): background becomes ignore (255) and the
  objects 0..19.
* :class:`PascalContextDataset` -- PASCAL Context: ``VOC2010/JPEGImages``, ``SegmentationClassContext/*.png``
  (0 = background, 1..59), ``ImageSets/SegmentationContext/{train,val}.txt``; 59 classes without background
  (default), 60 with it.
* :class:`CocoStuffDataset` -- COCO-Stuff 164k: ``images/{train,val}2017/*.jpg`` and
  ``annotations/{train,val}2017/*_labelTrainIds.png`` (train ids 0..170, 255 unlabelled).
* :class:`SemSegDataset` -- the generic reader behind them (any folder pair with a split list or none).

Items are ``dict(inputs=Tensor(3, H, W), data_samples=SegSample)`` (:mod:`.sample`): pixel values, never
normalised. A missing file or split list raises ``FileNotFoundError`` naming it when the dataset is built; an
unreadable image :class:`~forge.data.coco_dataset.CorruptImageError`; a label map with a value outside the
dataset's set, of more than one channel or of another size than its image :class:`LabelError`, naming the file
and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from forge.data.coco_dataset import load_rgb
from forge.data.structures import ImageMeta
from forge.data.transforms import Compose

from .classes import COCO_STUFF_CLASSES, CONTEXT59_CLASSES, CONTEXT60_CLASSES, VOC20_CLASSES, VOC_CLASSES
from .sample import IGNORE_INDEX, pack_seg_sample

__all__ = ["LabelError", "SemSegDataset", "VOCSegDataset", "PascalContextDataset", "CocoStuffDataset",
           "read_label_map"]


class LabelError(ValueError):
    """A label map that cannot be right for its dataset (the message names the file and the value)."""


def _as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else [str(v) for v in x]


def read_label_map(path: str, max_value: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Read a single-channel label PNG (palette indices or grey values) as ``(H, W)`` int64.

    Raises:
        FileNotFoundError: no such file.
        LabelError: unreadable, more than one channel, or a value outside ``0..max_value`` and ``ignore_index``.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: label map not found")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise LabelError(f"{path}: label map must be single-channel (palette or grey), got mode {im.mode}")
            arr = np.array(im).astype(np.int64)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise LabelError(f"{path}: cannot read label map: {e}") from None
    values = np.unique(arr)
    bad = values[(values > max_value) & (values != ignore_index) | (values < 0)]
    if bad.size:
        raise LabelError(f"{path}: label value {int(bad[0])} is not a class of this dataset "
                         f"(expected 0..{max_value} or {ignore_index})")
    return arr


class SemSegDataset(Dataset):
    """Images and label maps in two folders, optionally restricted to a split list.

    Args:
        root: dataset root; the folders and split lists below are relative to it (absolute paths kept).
        img_dir: image folder(s); a list pairs with ``ann_dir`` and ``split`` (VOC's train + SBD aug).
        ann_dir: label folder(s).
        split: text file(s) of image stems, one per line; None: every ``img_suffix`` file of ``img_dir``.
        classes: class names in label order (after ``reduce_zero_label``).
        max_raw_value: largest valid value in the files (besides ``ignore_index``).
        reduce_zero_label: file value 0 -> ignore, ``v`` -> ``v - 1`` (VOC-20, Context-59).
        img_suffix, seg_suffix: file name endings (the label's replaces the image's).
        pipeline: transforms of :mod:`forge.data.transforms.semseg` (a list or a callable).
        keep_ori_gt: carry the original-resolution labels for evaluation (``SegSample.ori_gt_sem_seg``).
        suppress_labels: classes whose pixels are marked -1 (unlabelled) right after reading, before any
            transform, as MaskCLIP's ``LoadAnnotations(suppress_labels=...)``; ``"all"``: every class
            (annotation-free training).
    """

    def __init__(
        self,
        root: str,
        img_dir: str | Sequence[str],
        ann_dir: str | Sequence[str],
        classes: Sequence[str],
        max_raw_value: int,
        split: str | Sequence[str] | None = None,
        reduce_zero_label: bool = False,
        img_suffix: str = ".jpg",
        seg_suffix: str = ".png",
        pipeline: Sequence[Callable] | Callable | None = None,
        keep_ori_gt: bool = True,
        ignore_index: int = IGNORE_INDEX,
        suppress_labels: Sequence[int] | str | None = None,
    ) -> None:
        self.root = str(root)
        self.classes = tuple(classes)
        self.max_raw_value = int(max_raw_value)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.keep_ori_gt = bool(keep_ori_gt)
        self.ignore_index = int(ignore_index)
        if isinstance(suppress_labels, str):
            if suppress_labels != "all":
                raise ValueError(f"suppress_labels must be a list of class indices or 'all', got {suppress_labels!r}")
            suppress_labels = range(len(self.classes))
        self.suppress_labels = tuple(int(c) for c in (suppress_labels or ()))
        bad = [c for c in self.suppress_labels if not 0 <= c < len(self.classes)]
        if bad:
            raise ValueError(f"{type(self).__name__}: suppress_labels {bad} outside 0..{len(self.classes) - 1}")
        if pipeline is None or callable(pipeline):
            self.pipeline = pipeline
        else:
            self.pipeline = Compose(list(pipeline))
        img_dirs, ann_dirs = _as_list(img_dir), _as_list(ann_dir)
        splits = [None] * max(len(img_dirs), len(ann_dirs)) if split is None else _as_list(split)
        n = max(len(img_dirs), len(ann_dirs), len(splits))
        if len(img_dirs) == 1:
            img_dirs = img_dirs * n
        if len(ann_dirs) == 1:
            ann_dirs = ann_dirs * n
        if not len(img_dirs) == len(ann_dirs) == len(splits):
            raise ValueError(f"{type(self).__name__}: img_dir {img_dirs}, ann_dir {ann_dirs} and split {splits} "
                             "must pair up (equal lengths, or one entry)")
        self.records: list[tuple[str, str]] = []
        for idir, adir, sp in zip(img_dirs, ann_dirs, splits):
            idir, adir = self._path(idir), self._path(adir)
            for d in (idir, adir):
                if not os.path.isdir(d):
                    raise FileNotFoundError(f"{type(self).__name__}: folder {d} not found (root={self.root})")
            if sp is None:
                stems = sorted(f[: -len(img_suffix)] for f in os.listdir(idir) if f.endswith(img_suffix))
            else:
                sp = self._path(sp)
                if not os.path.isfile(sp):
                    raise FileNotFoundError(f"{type(self).__name__}: split list {sp} not found")
                with open(sp) as f:
                    stems = [line.strip() for line in f if line.strip()]
            for stem in stems:
                img, seg = os.path.join(idir, stem + img_suffix), os.path.join(adir, stem + seg_suffix)
                for path, what in ((img, "image"), (seg, "label map")):
                    if not os.path.isfile(path):
                        src = f" (listed in {sp})" if sp else ""
                        raise FileNotFoundError(f"{type(self).__name__}: {what} {path} not found{src}")
                self.records.append((img, seg))
        if not self.records:
            raise FileNotFoundError(f"{type(self).__name__}: no images found under {img_dirs} (root={self.root})")
        self.metainfo = dict(classes=self.classes)

    def _path(self, p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(self.root, p)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def load_labels(self, path: str) -> np.ndarray:
        """``(H, W)`` int64 labels ``0..C-1`` / ignore, after ``reduce_zero_label``."""
        raw = read_label_map(path, self.max_raw_value, self.ignore_index)
        if self.reduce_zero_label:
            out = raw - 1
            out[(raw == 0) | (raw == self.ignore_index)] = self.ignore_index
            return out
        return raw

    def load_sample(self, index: int) -> dict:
        img_path, seg_path = self.records[index]
        img = load_rgb(img_path)
        gt = self.load_labels(seg_path)
        if gt.shape != img.shape[:2]:
            raise LabelError(f"{seg_path}: label map {gt.shape} and image {img_path} {img.shape[:2]} differ in size")
        h, w = gt.shape
        meta = ImageMeta(image_id=index, file_name=img_path, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))
        if self.keep_ori_gt:
            ori = gt.copy()
        if self.suppress_labels:
            gt[np.isin(gt, self.suppress_labels)] = -1
        sample = dict(img=img, gt_seg=gt, meta=meta)
        if self.keep_ori_gt:
            sample["ori_gt_seg"] = ori
        return sample

    def __getitem__(self, index: int) -> dict:
        sample = self.load_sample(index)
        if self.pipeline is not None:
            sample = self.pipeline(sample)
        return pack_seg_sample(sample)


class VOCSegDataset(SemSegDataset):
    """PASCAL VOC 2012 (+ SBD aug). ``split`` names lists of ``ImageSets/Segmentation`` (``'val'``) or files;
    train on VOC + SBD as MaskCLIP: ``split=[train, aug], ann_dir=[SegmentationClass, SegmentationClassAug]``."""

    def __init__(self, root: str, split: str | Sequence[str] = "val",
                 ann_dir: str | Sequence[str] = "SegmentationClass", with_background: bool = False,
                 **kwargs) -> None:
        splits = [s if s.endswith(".txt") else f"ImageSets/Segmentation/{s}.txt" for s in _as_list(split)]
        super().__init__(root, "JPEGImages", ann_dir, classes=VOC_CLASSES if with_background else VOC20_CLASSES,
                         max_raw_value=20, split=splits, reduce_zero_label=not with_background, **kwargs)


class PascalContextDataset(SemSegDataset):
    """PASCAL Context in mmsegmentation's converted layout; 59 classes (background ignored) or 60."""

    def __init__(self, root: str, split: str = "val", with_background: bool = False, **kwargs) -> None:
        sp = split if split.endswith(".txt") else f"ImageSets/SegmentationContext/{split}.txt"
        super().__init__(root, "JPEGImages", "SegmentationClassContext",
                         classes=CONTEXT60_CLASSES if with_background else CONTEXT59_CLASSES, max_raw_value=59,
                         split=sp, reduce_zero_label=not with_background, **kwargs)


class CocoStuffDataset(SemSegDataset):
    """COCO-Stuff 164k (171 classes), ``split`` ``'train'`` or ``'val'`` (folders ``images/<split>2017``)."""

    def __init__(self, root: str, split: str = "val", **kwargs) -> None:
        super().__init__(root, f"images/{split}2017", f"annotations/{split}2017", classes=COCO_STUFF_CLASSES,
                         max_raw_value=170, split=None, img_suffix=".jpg", seg_suffix="_labelTrainIds.png", **kwargs)
