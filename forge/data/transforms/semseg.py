"""Semantic-segmentation transforms: image and label map (``sample['gt_seg']``) moved together.

The sample dict is described in :mod:`forge.data.semseg.sample`. The steps and their arithmetic follow
mmsegmentation 0.x (the code MaskCLIP+ trains with): keep-ratio rescale to a ``(long, short)`` scale bound with an
optional random ratio (:class:`RandomResizeSeg`; ``ratio_range=None`` is the test resize: ``(2048, 512)`` = short
side 512, ``(520, 520)`` = long side 520), random crop with a cap on the share of any single class
(:class:`RandomCropSeg`), horizontal flip, mmseg's photometric distortion (:class:`SegPhotometricDistort`), and a
bottom/right pad (:class:`PadSeg`). Images are resized bilinearly by OpenCV (as ``mmcv.imrescale``), label maps with
nearest neighbour. Randomness comes from the global ``numpy.random`` state (seeded per worker by the runner).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .base import Sample, check_image

__all__ = ["RandomResizeSeg", "RandomCropSeg", "RandomFlipSeg", "SegPhotometricDistort", "PadSeg", "SuppressLabels",
           "rescale_size"]


def rescale_size(h: int, w: int, scale: Sequence[int]) -> tuple[int, int]:
    """``(h', w')`` of a keep-ratio rescale so that the long side fits ``max(scale)`` and the short side
    ``min(scale)`` (``mmcv.rescale_size``: factor ``min(L / max(h, w), S / min(h, w))``, sizes rounded half up)."""
    long_edge, short_edge = max(scale), min(scale)
    f = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def _resize_pair(sample: Sample, size: tuple[int, int]) -> None:
    img = sample["img"]
    check_image(img, "RandomResizeSeg")
    h, w = size
    if img.shape[:2] != (h, w):
        sample["img"] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, img.shape[2])
        gt = sample.get("gt_seg")
        if gt is not None:
            # int32 for OpenCV (no int64 support); nearest neighbour keeps every value a label
            sample["gt_seg"] = cv2.resize(gt.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    meta = sample.get("meta")
    if meta is not None:
        meta.img_shape = (h, w)
        oh, ow = meta.ori_shape
        meta.scale_factor = (w / ow, h / oh) if oh and ow else (1.0, 1.0)


class RandomResizeSeg:
    """Keep-ratio resize to ``scale * r`` with ``r ~ U(ratio_range)`` (mmseg ``Resize(img_scale, ratio_range)``:
    the scale bound is ``(int(L * r), int(S * r))``); ``ratio_range=None``: exactly ``scale`` (the test resize)."""

    def __init__(self, scale: Sequence[int], ratio_range: Sequence[float] | None = None) -> None:
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"RandomResizeSeg: scale must be (long, short) > 0, got {scale!r}")
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = None if ratio_range is None else (float(ratio_range[0]), float(ratio_range[1]))

    def __call__(self, sample: Sample) -> Sample:
        scale = self.scale
        if self.ratio_range is not None:
            r = float(np.random.random_sample()) * (self.ratio_range[1] - self.ratio_range[0]) + self.ratio_range[0]
            scale = (int(scale[0] * r), int(scale[1] * r))
        h, w = sample["img"].shape[:2]
        _resize_pair(sample, rescale_size(h, w, scale))
        return sample

    def __repr__(self) -> str:
        return f"RandomResizeSeg(scale={self.scale}, ratio_range={self.ratio_range})"


class RandomCropSeg:
    """Random ``crop_size = (h, w)`` window (the whole side where the image is smaller). With
    ``cat_max_ratio < 1`` a window is redrawn (up to 10 times, the last one kept) while a single label value holds
    ``>= cat_max_ratio`` of its non-ignored pixels or it holds a single value (mmseg ``RandomCrop``; the unlabelled
    value -1 counts as a value)."""

    def __init__(self, crop_size: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f"RandomCropSeg: crop_size must be (h, w) > 0, got {crop_size!r}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)

    def _window(self, h: int, w: int) -> tuple[int, int]:
        y = int(np.random.randint(0, max(h - self.crop_size[0], 0) + 1))
        x = int(np.random.randint(0, max(w - self.crop_size[1], 0) + 1))
        return y, x

    def __call__(self, sample: Sample) -> Sample:
        img, gt = sample["img"], sample.get("gt_seg")
        h, w = img.shape[:2]
        ch, cw = self.crop_size
        y, x = self._window(h, w)
        if self.cat_max_ratio < 1.0 and gt is not None:
            for _ in range(10):
                values, counts = np.unique(gt[y : y + ch, x : x + cw], return_counts=True)
                counts = counts[values != self.ignore_index]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                y, x = self._window(h, w)
        sample["img"] = np.ascontiguousarray(img[y : y + ch, x : x + cw])
        if gt is not None:
            sample["gt_seg"] = np.ascontiguousarray(gt[y : y + ch, x : x + cw])
        if sample.get("meta") is not None:
            sample["meta"].img_shape = sample["img"].shape[:2]
        return sample

    def __repr__(self) -> str:
        return f"RandomCropSeg(crop_size={self.crop_size}, cat_max_ratio={self.cat_max_ratio})"


class RandomFlipSeg:
    """Horizontal flip of image and labels with probability ``prob``; toggles ``meta.flip``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, sample: Sample) -> Sample:
        if self.prob > 0 and float(np.random.random_sample()) < self.prob:
            sample["img"] = np.ascontiguousarray(sample["img"][:, ::-1])
            if sample.get("gt_seg") is not None:
                sample["gt_seg"] = np.ascontiguousarray(sample["gt_seg"][:, ::-1])
            if sample.get("meta") is not None:
                sample["meta"].flip = not sample["meta"].flip
        return sample

    def __repr__(self) -> str:
        return f"RandomFlipSeg(prob={self.prob})"


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


class SegPhotometricDistort:
    """mmseg's ``PhotoMetricDistortion`` on a uint8 RGB image, each step with probability 1/2: brightness
    ``+U(-delta, delta)``; contrast ``*U(range)`` (before or after the HSV steps, by a coin); saturation
    ``*U(range)``; hue ``+randint(-delta, delta)`` (OpenCV hue units, 0..179). Every step rounds down to uint8, as
    mmseg does. (mmseg works on BGR: the hue shift runs the other way round the colour wheel here; its
    distribution is symmetric.)"""

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> None:
        self.brightness_delta = int(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = int(hue_delta)

    def __call__(self, sample: Sample) -> Sample:
        img = sample["img"]
        check_image(img, "SegPhotometricDistort")
        if img.dtype != np.uint8:
            raise TypeError("SegPhotometricDistort works on uint8 images (mmseg's rounding); put it before float steps")
        rnd = np.random
        if rnd.randint(2):
            img = _convert(img, beta=rnd.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = rnd.randint(2) == 1
        if contrast_first and rnd.randint(2):
            img = _convert(img, alpha=rnd.uniform(*self.contrast_range))
        if rnd.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=rnd.uniform(*self.saturation_range))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if rnd.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            shift = rnd.randint(-self.hue_delta, self.hue_delta)
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(int) + shift) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and rnd.randint(2):
            img = _convert(img, alpha=rnd.uniform(*self.contrast_range))
        sample["img"] = img
        return sample

    def __repr__(self) -> str:
        return (f"SegPhotometricDistort(brightness_delta={self.brightness_delta}, contrast={self.contrast_range}, "
                f"saturation={self.saturation_range}, hue_delta={self.hue_delta})")


class PadSeg:
    """Pad bottom/right to at least ``size = (h, w)``: image with ``img_fill`` pixels, labels with ``seg_fill``.
    The unpadded size is kept in ``sample['valid_shape']`` (-> ``meta.img_shape``), so the model's preprocessor
    gives the padding the normalised value 0, as mmseg's pad after normalisation."""

    def __init__(self, size: Sequence[int], img_fill: float = 0, seg_fill: int = 255) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.img_fill, self.seg_fill = img_fill, int(seg_fill)

    def __call__(self, sample: Sample) -> Sample:
        img = sample["img"]
        h, w = img.shape[:2]
        ph, pw = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        sample["valid_shape"] = (h, w)
        if ph or pw:
            sample["img"] = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=self.img_fill)
            if sample.get("gt_seg") is not None:
                sample["gt_seg"] = np.pad(sample["gt_seg"], ((0, ph), (0, pw)), constant_values=self.seg_fill)
        return sample

    def __repr__(self) -> str:
        return f"PadSeg(size={self.size})"


class SuppressLabels:
    """Mark the pixels of ``labels`` as unlabelled (-1): zero-shot training hides the unseen classes' ground
    truth this way (mmseg MaskCLIP's ``LoadAnnotations(suppress_labels=...)``); ``all_classes=C`` hides 0..C-1
    (annotation-free training)."""

    def __init__(self, labels: Sequence[int] = (), all_classes: int | None = None) -> None:
        self.labels = tuple(range(int(all_classes))) if all_classes else tuple(int(v) for v in labels)

    def __call__(self, sample: Sample) -> Sample:
        gt = sample.get("gt_seg")
        if gt is not None and self.labels:
            gt = gt.copy()
            gt[np.isin(gt, self.labels)] = -1
            sample["gt_seg"] = gt
        return sample

    def __repr__(self) -> str:
        return f"SuppressLabels({len(self.labels)} classes)"
