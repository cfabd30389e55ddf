"""ImageNet-C-style image corruptions at severities 1-5 (Hendrycks & Dietterich, ICLR 2019), for robustness tests.

Parameter tables are those of ImageNet-C's ``make_imagenet_c.py`` (hendrycks/robustness), which MaskCLIP's
robustness study applies unchanged through its ``Corrupt(name, level)`` test transform, *before* the test resize,
on the image at its original size. Each function maps an ``(H, W, 3)`` uint8 image to a uint8 image of the same
size; as in ImageNet-C the float result is clipped to ``[0, 255]`` and truncated (``np.uint8``), not rounded.

=================  =========================================================  ==========================
name               operation on ``x = img / 255``                            severity 1..5
=================  =========================================================  ==========================
gaussian_noise     ``x + N(0, c)``                                            c = .08 .12 .18 .26 .38
shot_noise         ``Poisson(x c) / c``                                       c = 60 25 12 5 3
impulse_noise      salt & pepper on a fraction c of the values (1/2 each)     c = .03 .06 .09 .17 .27
speckle_noise      ``x + x N(0, c)``                                          c = .15 .2 .35 .45 .6
gaussian_blur      Gaussian filter, sigma c (per channel, edges 'nearest')    c = 1 2 3 4 6
defocus_blur       disk of radius r, anti-aliased by a Gaussian (a)           r = 3 4 6 8 10, a = .1 .5 .5 .5 .5
jpeg_compression   JPEG round trip at quality c (PIL)                         c = 25 18 15 10 7
brightness         HSV value ``v + c``                                        c = .1 .2 .3 .4 .5
contrast           ``(x - mean) c + mean`` (per-channel image mean)           c = .4 .3 .2 .1 .05
=================  =========================================================  ==========================

Differences from the original code, named: it runs skimage's ``gaussian``/``random_noise`` and ``rgb2hsv``;
here the same operations are written with scipy/OpenCV/numpy (tested against direct formulas). MaskCLIP's mmseg
images are BGR, so its JPEG round trip compresses a channel-swapped image (chroma subsampling acts on the wrong
planes); ours compresses the RGB image, as ImageNet-C meant. Noise draws come from ``numpy.random`` (global state),
or from ``rng`` when given.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["CORRUPTIONS", "SEVERITY_TABLE", "corrupt", "Corrupt", "disk_kernel"]

SEVERITY_TABLE: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
}


def _rng(rng: np.random.Generator | None):
    return rng if rng is not None else np.random


def _gaussian_noise(x: np.ndarray, c: float, rng) -> np.ndarray:
    return x + _rng(rng).normal(size=x.shape, scale=c)


def _shot_noise(x: np.ndarray, c: float, rng) -> np.ndarray:
    return _rng(rng).poisson(x * c) / float(c)


def _impulse_noise(x: np.ndarray, c: float, rng) -> np.ndarray:
    # skimage random_noise(mode='s&p', amount=c): each value flipped with prob c, to 1 or 0 with prob 1/2
    r = _rng(rng)
    flipped = r.random_sample(x.shape) <= c if rng is None else r.random(x.shape) <= c
    salted = r.random_sample(x.shape) <= 0.5 if rng is None else r.random(x.shape) <= 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def _speckle_noise(x: np.ndarray, c: float, rng) -> np.ndarray:
    return x + x * _rng(rng).normal(size=x.shape, scale=c)


def _gaussian_blur(x: np.ndarray, c: float, rng) -> np.ndarray:
    # skimage gaussian(multichannel=True): sigma on both spatial axes only, mode 'nearest', truncate 4
    return gaussian_filter(x, sigma=(c, c, 0), mode="nearest", truncate=4.0)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a normalised disk on a 17x17 grid (``(2r+1)^2`` for r > 8), smoothed by a 3x3
    (5x5) Gaussian of sigma ``alias_blur``."""
    if radius <= 8:
        grid, ksize = np.arange(-8, 9), (3, 3)
    else:
        grid, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _defocus_blur(x: np.ndarray, c: tuple, rng) -> np.ndarray:
    kernel = disk_kernel(c[0], c[1])
    return np.stack([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(x.shape[2])], axis=2)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.array(im.convert("RGB"))


def _brightness(x: np.ndarray, c: float, rng) -> np.ndarray:
    # HSV value + c, hue and saturation kept: every channel scales by v' / v (v = max over channels)
    v = x.max(axis=2, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(v > 0, v_new / v, 0.0)
    out = x * scale
    return np.where(v > 0, out, v_new)  # black pixels (s = 0) become grey v'


def _contrast(x: np.ndarray, c: float, rng) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


_FUNCS: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "defocus_blur": _defocus_blur,
    "brightness": _brightness,
    "contrast": _contrast,
}
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITY_TABLE)


def corrupt(img: np.ndarray, name: str, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Corrupt an ``(H, W, 3)`` uint8 RGB image; ``severity`` 1..5 (0 returns the image unchanged)."""
    if name not in SEVERITY_TABLE:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    if not isinstance(severity, (int, np.integer)) or not 0 <= int(severity) <= 5:
        raise ValueError(f"corruption severity must be an integer 0..5, got {severity!r}")
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"corrupt: expected an (H, W, 3) image, got {getattr(img, 'shape', type(img))}")
    if int(severity) == 0:
        return img
    img = np.clip(img, 0, 255).astype(np.uint8) if img.dtype != np.uint8 else img
    c = SEVERITY_TABLE[name][int(severity) - 1]
    if name == "jpeg_compression":
        return _jpeg(img, c)
    out = _FUNCS[name](img.astype(np.float64) / 255.0, c, rng)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


class Corrupt:
    """Pipeline step: corrupt ``sample['img']`` (uint8, at its loaded size) by ``name`` at ``severity``.

    ``forge-test ... corruption.name=gaussian_noise corruption.severity=3`` puts it first in the test pipeline.
    """

    def __init__(self, name: str, severity: int) -> None:
        if name not in SEVERITY_TABLE:
            raise ValueError(f"Corrupt: unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
        if not 1 <= int(severity) <= 5:
            raise ValueError(f"Corrupt: severity must be 1..5, got {severity!r}")
        self.name, self.severity = name, int(severity)

    def __call__(self, sample: dict) -> dict:
        img = sample["img"]
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise TypeError("Corrupt must come first in the pipeline (on the uint8 image as loaded), got "
                            f"{getattr(img, 'dtype', type(img))}")
        sample["img"] = corrupt(img, self.name, self.severity)
        return sample

    def __repr__(self) -> str:
        return f"Corrupt(name={self.name!r}, severity={self.severity})"
