"""Detection/instance-segmentation transforms that keep image, boxes and masks consistent.

Every transform is a small picklable callable class ``t(sample) -> sample`` on a **sample dict**:

``img``
    ``(H, W, 3)`` ``np.ndarray``; RGB (as loaded), float32 in ``[0, 255]`` until :class:`Normalize`.
``gt``
    :class:`~forge.data.structures.Instances` in the coordinates of ``img``: boxes xyxy (exclusive ``x2``/``y2``),
    masks ``(N, H, W)`` bool at the size of ``img`` (or None for box-only data such as CrowdHuman).
``meta``
    :class:`~forge.data.structures.ImageMeta`; :class:`Resize` updates ``scale_factor``/``img_shape``,
    :class:`RandomMirror` toggles ``flip``.
``extra_boxes`` (optional)
    ``dict[str, Tensor(N, 4)]`` of further per-instance boxes (CrowdHuman's visible boxes); every geometric
    transform moves them with ``gt.boxes`` and every filter keeps them aligned.

Randomness comes from the global ``numpy.random`` state only, which mmengine seeds per data-loader worker, so a
seeded run is reproducible.

YOLACT's training pipeline (``utils/augmentations.py`` ``SSDAugmentation``) is :class:`PhotometricDistort` ->
:class:`Expand` -> :class:`RandomSampleCrop` -> :class:`RandomMirror` -> :class:`Resize` (square, aspect not kept)
-> :class:`FilterSmallBoxes` -> :class:`Normalize`; its validation pipeline is :class:`Resize` -> :class:`Normalize`.
Differences from the original are listed in each class and in ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forge.data.structures import Instances

__all__ = [
    "Compose",
    "PhotometricDistort",
    "Expand",
    "RandomSampleCrop",
    "RandomMirror",
    "Resize",
    "FilterSmallBoxes",
    "Normalize",
    "YOLACT_MEAN_RGB",
    "YOLACT_STD_RGB",
    "IMAGENET_MEAN_RGB",
    "IMAGENET_STD_RGB",
]

# YOLACT's MEANS/STD are listed in BGR in data/config.py; its ResNet transform normalises the BGR image with them and
# then reorders the channels to RGB, so the network sees RGB with these per-channel constants.
YOLACT_MEAN_RGB = (123.68, 116.78, 103.94)
YOLACT_STD_RGB = (58.40, 57.12, 57.38)
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)

Sample = dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _rand() -> float:
    return float(np.random.random_sample())


def _coin(prob: float) -> bool:
    return prob > 0 and _rand() < prob


def _uniform(low: float, high: float) -> float:
    return float(np.random.uniform(low, high))


def _map_boxes(sample: Sample, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Apply ``fn`` to ``gt.boxes`` and every ``extra_boxes`` entry (in place on the sample dict)."""
    gt: Instances = sample["gt"]
    sample["gt"] = replace(gt, boxes=fn(gt.boxes))
    extra = sample.get("extra_boxes")
    if extra:
        sample["extra_boxes"] = {k: fn(v) for k, v in extra.items()}


def _select(sample: Sample, keep: torch.Tensor) -> None:
    """Keep the instances where ``keep`` (bool ``(N,)``) is true, in ``gt`` and ``extra_boxes``."""
    sample["gt"] = sample["gt"][keep]
    extra = sample.get("extra_boxes")
    if extra:
        sample["extra_boxes"] = {k: v[keep] for k, v in extra.items()}


def _set_masks(sample: Sample, masks: torch.Tensor | None) -> None:
    sample["gt"] = replace(sample["gt"], masks=masks)


def _float_image(img: np.ndarray) -> np.ndarray:
    return img if img.dtype == np.float32 else img.astype(np.float32)


def _tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    from forge.ops.masks import masks_to_boxes

    return masks_to_boxes(masks)


class Compose:
    """Apply transforms in order; ``None`` entries are skipped (handy for switching a step off in a config)."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample] | None]) -> None:
        self.transforms = [t for t in (transforms or []) if t is not None]
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable (did the config miss a _target_?)")

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


# ---------------------------------------------------------------------------------------------------------------
# photometric


def rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float RGB in ``[0, 255]`` -> HSV with H in degrees ``[0, 360)``, S in ``[0, 1]``, V in ``[0, 255]``
    (the ranges OpenCV uses for float images, which YOLACT's hue/saturation deltas assume)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    maxc = img.max(axis=-1)
    minc = img.min(axis=-1)
    delta = maxc - minc
    safe = np.where(delta > 0, delta, 1.0)
    s = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    h = np.where(
        maxc == r,
        (g - b) / safe,
        np.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    h = np.where(delta > 0, (h * 60.0) % 360.0, 0.0)
    return np.stack([h, s, maxc], axis=-1).astype(np.float32)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv[..., 0] % 360.0, hsv[..., 1], hsv[..., 2]
    c = v * s
    hp = h / 60.0
    x = c * (1.0 - np.abs(hp % 2.0 - 1.0))
    m = v - c
    sector = np.floor(hp).astype(np.int64) % 6
    z = np.zeros_like(c)
    # (r, g, b) before adding m, per sector 0..5
    choices_r = [c, x, z, z, x, c]
    choices_g = [x, c, c, x, z, z]
    choices_b = [z, z, x, c, c, x]
    conds = [sector == k for k in range(6)]
    r = np.select(conds, choices_r)
    g = np.select(conds, choices_g)
    b = np.select(conds, choices_b)
    return (np.stack([r, g, b], axis=-1) + m[..., None]).astype(np.float32)


class PhotometricDistort:
    """SSD/YOLACT photometric distortion of the image (boxes and masks untouched).

    Order (as the original): random brightness (add ``U(-delta, delta)``); then with probability 1/2 either
    ``contrast -> [to HSV] saturation -> hue [to RGB]`` or ``[to HSV] saturation -> hue [to RGB] -> contrast``.
    Each of brightness, contrast (multiply by ``U(contrast_range)``), saturation (multiply S by
    ``U(saturation_range)``) and hue (add ``U(-hue_delta, hue_delta)`` degrees) is applied with probability
    ``prob`` (1/2 in the original). The original's channel shuffle is disabled there, and so here.

    Difference: values are clipped to ``[0, 255]`` (S to ``[0, 1]``) after each step; the original does not clip
    (its OpenCV HSV round trip on out-of-range floats is ill-defined). ``clip=False`` turns clipping off.
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: float = 18.0,
        prob: float = 0.5,
        clip: bool = True,
    ) -> None:
        if not 0 <= brightness_delta <= 255:
            raise ValueError(f"PhotometricDistort: brightness_delta must be in [0, 255], got {brightness_delta}")
        for name, rng in (("contrast_range", contrast_range), ("saturation_range", saturation_range)):
            if len(rng) != 2 or not 0 <= rng[0] <= rng[1]:
                raise ValueError(f"PhotometricDistort: {name} must be (low, high) with 0 <= low <= high, got {rng}")
        if not 0 <= hue_delta <= 360:
            raise ValueError(f"PhotometricDistort: hue_delta must be in [0, 360], got {hue_delta}")
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = float(hue_delta)
        self.prob = float(prob)
        self.clip = clip

    def _clip(self, img: np.ndarray) -> np.ndarray:
        return np.clip(img, 0.0, 255.0, out=img) if self.clip else img

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        if _coin(self.prob):
            img = self._clip(img * np.float32(_uniform(*self.contrast_range)))
        return img

    def _hsv(self, img: np.ndarray) -> np.ndarray:
        do_sat = _coin(self.prob)
        sat = _uniform(*self.saturation_range) if do_sat else 1.0
        do_hue = _coin(self.prob)
        hue = _uniform(-self.hue_delta, self.hue_delta) if do_hue else 0.0
        if not do_sat and not do_hue:
            return img
        hsv = rgb_to_hsv(img)
        if do_sat:
            hsv[..., 1] *= sat
            if self.clip:
                np.clip(hsv[..., 1], 0.0, 1.0, out=hsv[..., 1])
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
        return self._clip(hsv_to_rgb(hsv))

    def __call__(self, sample: Sample) -> Sample:
        img = _float_image(sample["img"]).copy()
        if _coin(self.prob):
            img = self._clip(img + np.float32(_uniform(-self.brightness_delta, self.brightness_delta)))
        if _coin(0.5):
            img = self._hsv(self._contrast(img))
        else:
            img = self._contrast(self._hsv(img))
        sample["img"] = img
        return sample

    def __repr__(self) -> str:
        return (
            f"PhotometricDistort(brightness_delta={self.brightness_delta}, contrast_range={self.contrast_range}, "
            f"saturation_range={self.saturation_range}, hue_delta={self.hue_delta}, prob={self.prob})"
        )


# ---------------------------------------------------------------------------------------------------------------
# geometric


class Expand:
    """Zoom out: place the image at a random position on a canvas ``ratio`` times larger, filled with ``fill``.

    As YOLACT's ``Expand``: applied with probability ``prob`` (1/2), ``ratio ~ U(ratio_range)`` (1..4), canvas
    ``int(H * ratio) x int(W * ratio)``, offset ``(int(left), int(top))`` with ``left ~ U(0, W * ratio - W)``.

    Args:
        fill: canvas colour in the channel order of the image (RGB), in ``[0, 255]``; YOLACT fills with its mean.
    """

    def __init__(
        self, fill: Sequence[float] = YOLACT_MEAN_RGB, ratio_range: Sequence[float] = (1.0, 4.0), prob: float = 0.5
    ) -> None:
        if len(ratio_range) != 2 or not 1.0 <= ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"Expand: ratio_range must be (low, high) with 1 <= low <= high, got {ratio_range}")
        self.fill = tuple(float(v) for v in fill)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.prob = float(prob)

    def __call__(self, sample: Sample) -> Sample:
        if not _coin(self.prob):
            return sample
        img = _float_image(sample["img"])
        h, w, c = img.shape
        ratio = _uniform(*self.ratio_range)
        left = int(_uniform(0.0, w * ratio - w))
        top = int(_uniform(0.0, h * ratio - h))
        new_h, new_w = int(h * ratio), int(w * ratio)
        # int() truncation can make the canvas one pixel short of offset + size
        new_h, new_w = max(new_h, top + h), max(new_w, left + w)
        canvas = np.empty((new_h, new_w, c), dtype=np.float32)
        canvas[:] = np.asarray(self.fill, dtype=np.float32)
        canvas[top : top + h, left : left + w] = img
        sample["img"] = canvas
        masks = sample["gt"].masks
        if masks is not None:
            big = torch.zeros((masks.shape[0], new_h, new_w), dtype=torch.bool)
            big[:, top : top + h, left : left + w] = masks
            _set_masks(sample, big)
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        _map_boxes(sample, lambda b: b + shift)
        return sample

    def __repr__(self) -> str:
        return f"Expand(fill={self.fill}, ratio_range={self.ratio_range}, prob={self.prob})"


def _iou_with_rect(boxes: torch.Tensor, rect: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(boxes[:, :2], rect[:2])
    rb = torch.minimum(boxes[:, 2:], rect[2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_b = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    area_r = (rect[2:] - rect[:2]).prod()
    return inter / (area_b + area_r - inter).clamp(min=1e-6)


class RandomSampleCrop:
    """SSD random crop as YOLACT's ``RandomSampleCrop``.

    Each attempt picks a mode uniformly from ``min_ious`` (``None`` = keep the whole image; a number = a minimum-IoU
    mode; the original list is ``None, 0.1, 0.3, 0.7, 0.9, -inf``); up to ``max_trials`` (50) patches of size
    ``U(min_scale, 1) * (W, H)`` with aspect ``h / w`` in ``[1 / max_aspect, max_aspect]`` at ``int`` coordinates
    are tried. A patch is accepted when at least one non-crowd box has its centre strictly inside; instances whose
    centre is inside are kept (crowd included), their boxes clipped to the patch, their masks cropped.

    Args:
        min_ious: the modes (``None`` = no crop).
        min_scale, max_aspect, max_trials: patch sampling as above.
        enforce_min_iou: the original's IoU test is a no-op (``ssd.pytorch`` issue #68: YOLACT's author found that
            fixing it halved the mAP early in training) -- ``False`` (default) reproduces that; ``True`` requires
            the patch to overlap some box with IoU >= the mode's threshold.
        recompute_boxes: after cropping, set each box to the tight box of its cropped mask (instances whose mask
            became empty are dropped). The original only clips, which for non-convex objects leaves the box larger
            than the visible mask; ``False`` reproduces that. Ignored for box-only samples.
    """

    def __init__(
        self,
        min_ious: Sequence[float | None] = (None, 0.1, 0.3, 0.7, 0.9, float("-inf")),
        min_scale: float = 0.3,
        max_aspect: float = 2.0,
        max_trials: int = 50,
        enforce_min_iou: bool = False,
        recompute_boxes: bool = True,
        max_modes: int = 100,
    ) -> None:
        if not 0 < min_scale <= 1:
            raise ValueError(f"RandomSampleCrop: min_scale must be in (0, 1], got {min_scale}")
        if max_aspect < 1:
            raise ValueError(f"RandomSampleCrop: max_aspect must be >= 1, got {max_aspect}")
        self.min_ious = tuple(None if v is None else float(v) for v in min_ious)
        if not self.min_ious:
            raise ValueError("RandomSampleCrop: min_ious must not be empty")
        self.min_scale = float(min_scale)
        self.max_aspect = float(max_aspect)
        self.max_trials = int(max_trials)
        self.enforce_min_iou = enforce_min_iou
        self.recompute_boxes = recompute_boxes
        self.max_modes = int(max_modes)

    def __call__(self, sample: Sample) -> Sample:
        gt: Instances = sample["gt"]
        crowd = gt.iscrowd.bool() if gt.iscrowd is not None else torch.zeros(len(gt), dtype=torch.bool)
        if len(gt) == 0 or bool(crowd.all()):
            return sample  # nothing to keep in a patch (the original would loop for ever here)
        h, w = sample["img"].shape[:2]
        boxes = gt.boxes.float()
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(self.max_modes):
            mode = self.min_ious[int(np.random.randint(len(self.min_ious)))]
            if mode is None:
                return sample
            for _ in range(self.max_trials):
                pw = _uniform(self.min_scale * w, w)
                ph = _uniform(self.min_scale * h, h)
                if ph / pw < 1.0 / self.max_aspect or ph / pw > self.max_aspect:
                    continue
                left = _uniform(0.0, w - pw)
                top = _uniform(0.0, h - ph)
                rect = torch.tensor([int(left), int(top), int(left + pw), int(top + ph)], dtype=torch.float32)
                if rect[2] <= rect[0] or rect[3] <= rect[1]:
                    continue
                if self.enforce_min_iou and float(_iou_with_rect(boxes, rect).max()) < mode:
                    continue
                inside = (
                    (rect[0] < centres[:, 0])
                    & (rect[1] < centres[:, 1])
                    & (rect[2] > centres[:, 0])
                    & (rect[3] > centres[:, 1])
                )
                if not bool((inside & ~crowd).any()):
                    continue
                return self._crop(sample, rect, inside)
        return sample

    def _crop(self, sample: Sample, rect: torch.Tensor, inside: torch.Tensor) -> Sample:
        x1, y1, x2, y2 = (int(v) for v in rect.tolist())
        sample["img"] = np.ascontiguousarray(sample["img"][y1:y2, x1:x2])
        _select(sample, inside)
        masks = sample["gt"].masks
        if masks is not None:
            _set_masks(sample, masks[:, y1:y2, x1:x2].contiguous())
        lt = rect[:2].repeat(2)

        def clip_shift(b: torch.Tensor) -> torch.Tensor:
            out = b.clone()
            out[:, :2] = torch.maximum(out[:, :2], rect[:2])
            out[:, 2:] = torch.minimum(out[:, 2:], rect[2:])
            return out - lt

        _map_boxes(sample, clip_shift)
        gt = sample["gt"]
        if self.recompute_boxes and gt.masks is not None and len(gt):
            nonempty = gt.masks.flatten(1).any(dim=1)
            sample["gt"] = replace(gt, boxes=_tight_boxes(gt.masks))
            if not bool(nonempty.all()):
                _select(sample, nonempty)
        return sample

    def __repr__(self) -> str:
        return (
            f"RandomSampleCrop(min_ious={self.min_ious}, min_scale={self.min_scale}, max_aspect={self.max_aspect}, "
            f"enforce_min_iou={self.enforce_min_iou}, recompute_boxes={self.recompute_boxes})"
        )


class RandomMirror:
    """Horizontal flip with probability ``prob`` (YOLACT: 1/2): ``x1' = W - x2``, ``x2' = W - x1``; toggles
    ``meta.flip``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, sample: Sample) -> Sample:
        if not _coin(self.prob):
            return sample
        img = sample["img"]
        w = img.shape[1]
        sample["img"] = np.ascontiguousarray(img[:, ::-1])
        masks = sample["gt"].masks
        if masks is not None:
            _set_masks(sample, masks.flip(-1))

        def flip(b: torch.Tensor) -> torch.Tensor:
            out = b.clone()
            out[:, 0] = w - b[:, 2]
            out[:, 2] = w - b[:, 0]
            return out

        _map_boxes(sample, flip)
        meta = sample.get("meta")
        if meta is not None:
            sample["meta"] = replace(meta, flip=not meta.flip)
        return sample

    def __repr__(self) -> str:
        return f"RandomMirror(prob={self.prob})"


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(H, W, C)`` to ``size = (H', W')`` with half-pixel centres (as OpenCV ``INTER_LINEAR``)."""
    if img.shape[:2] == tuple(size):
        return _float_image(img)
    t = torch.from_numpy(np.ascontiguousarray(_float_image(img))).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).contiguous().numpy()


class Resize:
    """Resize image, boxes and masks.

    Target size:

    * ``size=S`` (int) or ``(H, W)``, ``keep_ratio=False``: exactly ``S x S`` / ``H x W`` (YOLACT: 550 x 550,
      aspect not kept);
    * ``keep_ratio=True``: the largest scale with ``h <= H`` and ``w <= W`` (``size=S`` means ``S x S``);
    * ``short_side`` (+ optional ``max_long_side``) instead of ``size``: shorter side to ``short_side`` unless the
      longer one would exceed ``max_long_side`` (Faster R-CNN/CrowdDet style, e.g. 800/1400).

    Image: bilinear, half-pixel centres. Masks: bilinear then ``> 0.5``. Boxes: multiplied by
    ``(w'/w, h'/h)``. ``meta.scale_factor`` is multiplied by the same factors (for a resize-only pipeline it maps
    original to network-input coordinates) and ``meta.img_shape`` set.

    ``recompute_boxes`` (default True): when masks are present, each box becomes the tight box of its resized mask.
    Shrinking loses parts thinner than the sampling step (star tips), so scaled boxes can stick out of the mask by
    several pixels; YOLACT scales the boxes regardless (``recompute_boxes=False``). A mask that vanishes gets a
    zero box, which :class:`FilterSmallBoxes` then drops.
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = 550,
        keep_ratio: bool = False,
        short_side: int | None = None,
        max_long_side: int | None = None,
        recompute_boxes: bool = True,
    ) -> None:
        self.recompute_boxes = recompute_boxes
        if size is None and short_side is None:
            raise ValueError("Resize: give size or short_side")
        if size is not None and short_side is not None:
            raise ValueError("Resize: give either size or short_side, not both")
        if size is not None:
            hw = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
            if len(hw) != 2 or min(hw) <= 0:
                raise ValueError(f"Resize: size must be a positive int or (H, W), got {size!r}")
            self.size: tuple[int, int] | None = hw  # type: ignore[assignment]
        else:
            self.size = None
            if int(short_side) <= 0 or (max_long_side is not None and int(max_long_side) <= 0):
                raise ValueError(f"Resize: short_side/max_long_side must be positive, got {short_side}/{max_long_side}")
        self.keep_ratio = keep_ratio
        self.short_side = None if short_side is None else int(short_side)
        self.max_long_side = None if max_long_side is None else int(max_long_side)

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """``(H', W')`` for an input of ``(h, w)``."""
        if self.size is not None and not self.keep_ratio:
            return self.size
        if self.size is not None:
            scale = min(self.size[0] / h, self.size[1] / w)
        else:
            scale = self.short_side / min(h, w)
            if self.max_long_side is not None:
                scale = min(scale, self.max_long_side / max(h, w))
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))

    def __call__(self, sample: Sample) -> Sample:
        from forge.ops.masks import resize_masks

        img = sample["img"]
        h, w = img.shape[:2]
        new_h, new_w = self.target_size(h, w)
        sample["img"] = resize_image(img, (new_h, new_w))
        sx, sy = new_w / w, new_h / h
        masks = sample["gt"].masks
        if masks is not None and (new_h, new_w) != (h, w):
            _set_masks(sample, resize_masks(masks, (new_h, new_w)))
        factor = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
        _map_boxes(sample, lambda b: b * factor)
        gt = sample["gt"]
        if self.recompute_boxes and gt.masks is not None and len(gt) and (new_h, new_w) != (h, w):
            sample["gt"] = replace(gt, boxes=_tight_boxes(gt.masks))
        meta = sample.get("meta")
        if meta is not None:
            old = meta.scale_factor
            sample["meta"] = replace(
                meta, scale_factor=(old[0] * sx, old[1] * sy), img_shape=(new_h, new_w), pad_shape=(new_h, new_w)
            )
        return sample

    def __repr__(self) -> str:
        if self.size is not None:
            return f"Resize(size={self.size}, keep_ratio={self.keep_ratio}, recompute_boxes={self.recompute_boxes})"
        return f"Resize(short_side={self.short_side}, max_long_side={self.max_long_side})"


class FilterSmallBoxes:
    """Drop instances whose box is not wider than ``min_width`` and taller than ``min_height`` pixels.

    YOLACT keeps ``w > discard_box_width`` and ``h > discard_box_height`` right after its resize (config values
    ``4 / 550``, meant as 4 px at 550). Note: the original compares them with boxes in *pixels* at that point, so
    it effectively only drops boxes under 0.0073 px; use ``min_width=min_height=4/550`` to reproduce that exactly.
    Crowd instances are filtered too, as in the original.
    """

    def __init__(self, min_width: float = 4.0, min_height: float | None = None) -> None:
        self.min_width = float(min_width)
        self.min_height = float(min_width if min_height is None else min_height)

    def __call__(self, sample: Sample) -> Sample:
        boxes = sample["gt"].boxes
        if boxes.shape[0] == 0:
            return sample
        keep = ((boxes[:, 2] - boxes[:, 0]) > self.min_width) & ((boxes[:, 3] - boxes[:, 1]) > self.min_height)
        if not bool(keep.all()):
            _select(sample, keep)
        return sample

    def __repr__(self) -> str:
        return f"FilterSmallBoxes(min_width={self.min_width}, min_height={self.min_height})"


class Normalize:
    """``(img - mean) / std`` per channel, optionally reordering RGB -> BGR first.

    ``mean`` and ``std`` are given in the channel order of the **output** tensor: RGB when ``to_bgr=False``
    (default), BGR when ``to_bgr=True`` (the image is reversed to BGR, then normalised).

    YOLACT's official ResNet/DarkNet weights take **RGB** input: its ``MEANS=(103.94, 116.78, 123.68)`` /
    ``STD=(57.38, 57.12, 58.40)`` are BGR-ordered and applied to the BGR image before its transform reorders to RGB,
    which equals ``Normalize(mean=YOLACT_MEAN_RGB, std=YOLACT_STD_RGB, to_bgr=False)``
    (``(123.68, 116.78, 103.94)`` / ``(58.40, 57.12, 57.38)``). ``to_bgr=True`` with the BGR-listed constants gives
    the same numbers in BGR channel order, for backbones trained on BGR (Caffe-style).
    """

    def __init__(
        self, mean: Sequence[float] = YOLACT_MEAN_RGB, std: Sequence[float] = YOLACT_STD_RGB, to_bgr: bool = False
    ) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"Normalize: mean and std need 3 values, got {list(mean)} and {list(std)}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"Normalize: std must be positive, got {list(std)}")
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.to_bgr = bool(to_bgr)

    def __call__(self, sample: Sample) -> Sample:
        img = _float_image(sample["img"])
        if self.to_bgr:
            img = img[..., ::-1]
        mean = np.asarray(self.mean, dtype=np.float32)
        inv_std = 1.0 / np.asarray(self.std, dtype=np.float32)
        sample["img"] = np.ascontiguousarray((img - mean) * inv_std, dtype=np.float32)
        meta = sample.get("meta")
        if meta is not None:
            extra = dict(meta.extra)
            extra["channel_order"] = "BGR" if self.to_bgr else "RGB"
            sample["meta"] = replace(meta, extra=extra)
        return sample

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std}, to_bgr={self.to_bgr})"
