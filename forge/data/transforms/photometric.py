"""Photometric distortion (SSD's, as YOLACT and mmdet's ``PhotoMetricDistortion`` use it) in RGB pixel space."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Sample, check_image, coin, float_image, uniform

__all__ = ["PhotometricDistort", "hsv_to_rgb", "rgb_to_hsv"]


def rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float RGB in ``[0, 255]`` -> HSV with H in degrees ``[0, 360)``, S in ``[0, 1]``, V in ``[0, 255]``
    (the ranges OpenCV uses for float images, which SSD's hue/saturation deltas assume)."""
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
    """SSD photometric distortion of an RGB image (boxes and masks untouched); the output is float32 pixel values.

    Order (as SSD/YOLACT): random brightness (add ``U(-delta, delta)``); then with probability 1/2 either
    ``contrast -> [to HSV] saturation -> hue [to RGB]`` or ``[to HSV] saturation -> hue [to RGB] -> contrast``.
    Each of brightness, contrast (multiply by ``U(contrast_range)``), saturation (multiply S by
    ``U(saturation_range)``) and hue (add ``U(-hue_delta, hue_delta)`` degrees) is applied with probability
    ``prob``. The defaults are SSD's (also mmdet's ``PhotoMetricDistortion``'s); SSD's channel shuffle is left out,
    as YOLACT disables it.

    Difference from YOLACT: values are clipped to ``[0, 255]`` (S to ``[0, 1]``) after each step; the original does
    not clip (its OpenCV HSV round trip on out-of-range floats is ill-defined). ``clip=False`` turns clipping off.
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
        if coin(self.prob):
            img = self._clip(img * np.float32(uniform(*self.contrast_range)))
        return img

    def _hsv(self, img: np.ndarray) -> np.ndarray:
        do_sat = coin(self.prob)
        sat = uniform(*self.saturation_range) if do_sat else 1.0
        do_hue = coin(self.prob)
        hue = uniform(-self.hue_delta, self.hue_delta) if do_hue else 0.0
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
        check_image(sample["img"], "PhotometricDistort")
        if sample["img"].shape[2] != 3:
            raise ValueError(f"PhotometricDistort: needs an RGB image, got {sample['img'].shape[2]} channels")
        img = float_image(sample["img"]).copy()
        if coin(self.prob):
            img = self._clip(img + np.float32(uniform(-self.brightness_delta, self.brightness_delta)))
        if coin(0.5):
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
