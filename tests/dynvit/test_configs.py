"""Every dynvit experiment composes and builds its model; the DeiT recipe is what the configs say."""

from __future__ import annotations

import glob
import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forge.config import validate
from forge.runner import scaled_lr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "forge", "configs")
EXPERIMENTS = sorted(
    os.path.relpath(p, os.path.join(CONFIG_DIR, "experiment"))[: -len(".yaml")]
    for p in glob.glob(os.path.join(CONFIG_DIR, "experiment", "dynvit", "*.yaml"))
)
DEIT = [f"dynvit/deit_{size}_{v}" for size in ("tiny", "small") for v in ("softmax", "relu_ln", "dw")]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_all_variants_exist():
    assert set(DEIT) | {"dynvit/digits_softmax", "dynvit/digits_relu_ln", "dynvit/digits_dw"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment, tmp_path):
    overrides = [f"experiment={experiment}"]
    if experiment in DEIT:
        # a small input keeps the build fast; the architecture (width, depth, heads, patch) is the DeiT one
        overrides += [f"dataset.root={tmp_path}", "pipeline.img_size=32", "dataset.num_classes=10"]
    cfg = compose_cfg(overrides)
    assert cfg.experiment_name == experiment
    model = instantiate(cfg.model, _convert_="partial")
    size = cfg.model.backbone.img_size  # the pipeline's output size (digits: the dataset's)
    x = torch.randn(2, cfg.dataset.in_chans, size, size)
    with torch.no_grad():
        assert model(x).shape == (2, cfg.dataset.num_classes)
    variant = experiment.rsplit("_", 1)[-1] if not experiment.endswith("relu_ln") else "relu_ln"
    attn = model.backbone.blocks[0].attn
    if variant == "dw":
        assert type(attn).__name__ == "DepthwiseAttention" and attn.groups == cfg.model.backbone.embed_dim
    else:
        assert type(attn).__name__ == "Attention"
        assert type(attn.attn_norm).__name__ == ("ReLULayerNorm" if variant == "relu_ln" else "SoftmaxNorm")


@pytest.mark.parametrize("size, width, heads", [("tiny", 192, 3), ("small", 384, 6)])
def test_deit_recipe(size, width, heads):
    cfg = compose_cfg([f"experiment=dynvit/deit_{size}_relu_ln", "dataset.root=/data/imagenet"])
    backbone = cfg.model.backbone
    assert (backbone.embed_dim, backbone.depth, backbone.num_heads, backbone.patch_size) == (width, 12, heads, 16)
    assert backbone.drop_path_rate == 0.1
    s = cfg.schedule
    assert (s.lr, s.base_batch_size, s.max_epochs, s.warmup_epochs) == (5e-4, 512, 300, 5)
    assert scaled_lr(s, world_size=8) == pytest.approx(1e-3)  # 8 x 128 = 1024 images: 5e-4 x 1024 / 512
    assert s.optimizer._target_ == "torch.optim.AdamW" and s.optimizer.weight_decay == 0.05 and s.drop_last
    warmup, cosine = s.schedulers
    assert warmup._target_ == "mmengine.optim.LinearLR" and (warmup.begin, warmup.end) == (0, 5)
    assert cosine._target_ == "mmengine.optim.CosineAnnealingLR" and (cosine.begin, cosine.end) == (5, 300)
    assert warmup.convert_to_iter_based and cosine.convert_to_iter_based
    # Mixup 0.8 / CutMix 1.0 with label smoothing 0.1, on every batch
    mix = cfg.model.data_preprocessor.batch_augment
    assert (mix._target_, mix.mixup_alpha, mix.cutmix_alpha, mix.prob, mix.switch_prob) == (
        "timm.data.Mixup", 0.8, 1.0, 1.0, 0.5)
    assert mix.label_smoothing == 0.1 and cfg.loss.label_smoothing == 0.1 and mix.num_classes == 1000
    train_tf = cfg.dataset.train.transform
    assert train_tf._target_ == "timm.data.create_transform" and train_tf.is_training
    assert train_tf.auto_augment == "rand-m9-mstd0.5-inc1" and train_tf.normalize is False  # uint8 out
    assert train_tf.interpolation == "bicubic" and train_tf.input_size == 224
    # the batch part: ImageNet normalisation, then random erasing 0.25 with per-pixel noise (in normalised space)
    pre = cfg.model.data_preprocessor
    assert list(pre.mean) == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert list(pre.std) == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255])
    erase = pre.random_erasing
    assert (erase.probability, erase.mode, erase.max_count) == (0.25, "pixel", 1)


def test_deit_transforms_are_timms():
    cfg = compose_cfg(["experiment=dynvit/deit_tiny_softmax", "dataset.root=/data/imagenet"])
    train = repr(instantiate(cfg.dataset.train.transform))
    for part in ("RandomResizedCropAndInterpolation", "RandAugment", "bicubic", "MaybePILToTensor"):
        assert part in train, train
    assert "Normalize" not in train and "RandomErasing" not in train  # both act on the batch, in the model
    pre = instantiate(cfg.model.data_preprocessor)
    assert "RandomErasing(p=0.25, mode=pixel" in repr(pre.random_erasing)
    val = repr(instantiate(cfg.dataset.val.transform))
    # DeiT evaluation: resize to 224 / 0.875 = 256 (bicubic), centre crop 224
    assert "Resize(size=256, interpolation=bicubic" in val and "CenterCrop(size=(224, 224))" in val, val


def test_deit_input_equals_timms_normalised_transform():
    # uint8 from the pipeline + the model's normalisation = timm's own ToTensor + Normalize, to float precision
    import numpy as np
    from PIL import Image
    from timm.data import create_transform

    cfg = compose_cfg(["experiment=dynvit/deit_tiny_softmax", "dataset.root=/data/imagenet", "pipeline.img_size=32"])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8))
    pixels = instantiate(cfg.dataset.val.transform)(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 32, 32)
    ours = instantiate(cfg.model.data_preprocessor)(dict(inputs=pixels[None], data_samples=None))["inputs"][0]
    timm_kw = {k: v for k, v in cfg.pipeline.val.items() if k not in ("_target_", "normalize")}
    ref = create_transform(**timm_kw)(image)  # timm's default: normalised with the ImageNet mean/std
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_imagenet_needs_a_root():
    cfg = compose_cfg(["experiment=dynvit/deit_tiny_softmax"])
    assert OmegaConf.is_missing(cfg.dataset, "root")
    with pytest.raises(Exception, match="dataset.root"):
        validate(cfg)
