"""ImageNet-C corruptions against their formulas, and the forge-test option that applies them."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from omegaconf import OmegaConf

from forge.config import ConfigError
from forge.data.corruptions import CORRUPTIONS, SEVERITY_TABLE, Corrupt, corrupt, disk_kernel


def _image(h=48, w=64, seed=0):
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256 + rng.integers(0, 30, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_tables_are_imagenet_c():
    assert SEVERITY_TABLE["gaussian_noise"] == (0.08, 0.12, 0.18, 0.26, 0.38)
    assert SEVERITY_TABLE["shot_noise"] == (60, 25, 12, 5, 3)
    assert SEVERITY_TABLE["defocus_blur"][2] == (6, 0.5)
    assert SEVERITY_TABLE["jpeg_compression"] == (25, 18, 15, 10, 7)
    assert SEVERITY_TABLE["contrast"] == (0.4, 0.3, 0.2, 0.1, 0.05)


@pytest.mark.parametrize("severity", [1, 5])
def test_noises_equal_their_formula(severity):
    img = _image()
    x = img / 255.0
    c = SEVERITY_TABLE["gaussian_noise"][severity - 1]
    ref = (np.clip(x + np.random.default_rng(3).normal(size=x.shape, scale=c), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(img, "gaussian_noise", severity, rng=np.random.default_rng(3)), ref)
    c = SEVERITY_TABLE["shot_noise"][severity - 1]
    ref = (np.clip(np.random.default_rng(4).poisson(x * c) / c, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(img, "shot_noise", severity, rng=np.random.default_rng(4)), ref)
    c = SEVERITY_TABLE["speckle_noise"][severity - 1]
    ref = (np.clip(x + x * np.random.default_rng(5).normal(size=x.shape, scale=c), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(img, "speckle_noise", severity, rng=np.random.default_rng(5)), ref)


def test_impulse_noise_flips_a_fraction_c_to_black_or_white():
    img = np.full((200, 200, 3), 128, np.uint8)
    out = corrupt(img, "impulse_noise", 4, rng=np.random.default_rng(0))
    changed = out != 128
    assert abs(changed.mean() - 0.17) < 0.01
    assert set(np.unique(out[changed])) == {0, 255} and abs((out[changed] == 255).mean() - 0.5) < 0.03


def test_gaussian_blur_is_a_nearest_padded_separable_gaussian():
    img = _image(20, 24)
    sigma = SEVERITY_TABLE["gaussian_blur"][1]
    radius = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.pad(img / 255.0, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(k[i] * x[i : i + 20] for i in range(2 * radius + 1))
    ref = sum(k[i] * rows[:, i : i + 24] for i in range(2 * radius + 1))
    out = corrupt(img, "gaussian_blur", 2)
    assert np.abs(out.astype(int) - (np.clip(ref, 0, 1) * 255).astype(int)).max() <= 1


def test_defocus_disk_kernel():
    raw = disk_kernel(3, 1e-6)  # a negligible anti-alias blur leaves the disk: 29 cells of radius <= 3
    assert raw.shape == (17, 17) and np.isclose(raw.sum(), 1.0, atol=1e-5)
    assert (raw > 1e-3).sum() == 29
    assert disk_kernel(10, 0.5).shape == (21, 21)
    flat = np.full((30, 30, 3), 77, np.uint8)
    assert (np.abs(corrupt(flat, "defocus_blur", 5).astype(int) - 77) <= 1).all()  # a flat image stays flat


def test_brightness_is_an_hsv_value_shift():
    img = _image(6, 7)
    out = corrupt(img, "brightness", 3)
    for y, x in [(0, 0), (3, 4), (5, 6)]:
        h, s, v = colorsys.rgb_to_hsv(*(img[y, x] / 255.0))
        ref = np.array(colorsys.hsv_to_rgb(h, s, min(v + 0.3, 1.0))) * 255
        assert np.abs(out[y, x].astype(float) - ref).max() <= 1.0
    black = corrupt(np.zeros((2, 2, 3), np.uint8), "brightness", 1)
    assert (black == int(0.1 * 255)).all()


def test_contrast_formula():
    img = _image()
    x = img / 255.0
    m = x.mean(axis=(0, 1), keepdims=True)
    ref = (np.clip((x - m) * 0.2 + m, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(img, "contrast", 3), ref)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_damage_grows_with_severity(name):
    img = _image(64, 64)
    np.random.seed(0)
    err = [np.abs(corrupt(img, name, s).astype(float) - img).mean() for s in range(1, 6)]
    assert all(b >= a - 0.5 for a, b in zip(err, err[1:])), err
    assert err[-1] > err[0] > 0
    assert corrupt(img, name, 3).shape == img.shape and corrupt(img, name, 3).dtype == np.uint8


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(_image(), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(_image(), "contrast", 6)
    with pytest.raises(ValueError, match="severity"):
        Corrupt("contrast", 0)
    with pytest.raises(TypeError, match="first in the pipeline"):
        Corrupt("contrast", 1)(dict(img=_image().astype(np.float32)))


def _cfg(**corruption):
    return OmegaConf.create(dict(
        corruption=corruption,
        dataset=dict(val=dict(_target_="x.Dataset", pipeline="${pipeline.val}"), test="${.val}"),
        pipeline=dict(val=[dict(_target_="forge.data.transforms.semseg.RandomResizeSeg", scale=[2048, 512])]),
    ))


def test_forge_test_option_prepends_corrupt():
    from forge.cli.test import apply_corruption

    cfg = apply_corruption(_cfg(name="jpeg_compression", severity=2))
    steps = cfg.dataset.test.pipeline
    assert steps[0] == dict(_target_="forge.data.corruptions.Corrupt", name="jpeg_compression", severity=2)
    assert steps[1]._target_.endswith("RandomResizeSeg") and len(steps) == 2
    assert len(cfg.pipeline.val) == 1  # the shared pipeline node is left alone
    same = apply_corruption(_cfg(name=None, severity=3))
    assert OmegaConf.select(same, "dataset.test.pipeline")[0]._target_.endswith("RandomResizeSeg")
    with pytest.raises(ConfigError, match="corruption.name='fog'"):
        apply_corruption(_cfg(name="fog", severity=1))
    with pytest.raises(ConfigError, match="corruption.severity=9"):
        apply_corruption(_cfg(name="contrast", severity=9))
