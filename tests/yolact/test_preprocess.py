"""YOLACT's input: pixel values from the pipeline or ``preprocess_image``, normalised by the model's own data
preprocessor with the released weights' values; every entry point (training/forge-test, forge-infer, export) feeds
the network the same numbers as the original's ``FastBaseTransform``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forge.data.structures import DetSample, ImageMeta, Instances
from forge.data.transforms import Compose, Resize, pack_sample
from forge.models import ImagePreprocessor
from yolact.export import ExportWrapper
from yolact.model import Yolact
from yolact.preprocess import PIXEL_MEAN, PIXEL_STD, input_normalization, preprocess_image

SMALL = dict(num_classes=3, max_size=64, fpn_channels=16, conf_thresh=0.0)


def _image(h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _original_fast_base_transform(image: np.ndarray, size: int, backbone: str) -> torch.Tensor:
    """FastBaseTransform as the original computes it: BGR image, float bilinear resize, (x - MEANS) / STD with its
    BGR-listed constants (DarkNet: x / 255), then BGR -> RGB."""
    bgr = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    x = F.interpolate(bgr, (size, size), mode="bilinear", align_corners=False)
    if backbone == "darknet53":
        x = x / 255.0
    else:
        means = torch.tensor((103.94, 116.78, 123.68))[None, :, None, None]
        std = torch.tensor((57.38, 57.12, 58.40))[None, :, None, None]
        x = (x - means) / std
    return x[:, [2, 1, 0]]


@pytest.mark.parametrize("backbone", ["resnet50", "darknet53"])
def test_the_official_input_comes_out_of_the_models_own_preprocessor(backbone):
    with torch.device("meta"):  # as yolact.convert builds official releases: the values are not weights
        net = Yolact(backbone=backbone, **SMALL)
    pre = net.data_preprocessor
    assert isinstance(pre, ImagePreprocessor) and pre.mean.device.type == "cpu"
    norm = input_normalization(backbone)
    assert pre.mean.flatten().tolist() == pytest.approx(norm["mean"]) and not pre.rgb_to_bgr
    assert pre.std.flatten().tolist() == pytest.approx(norm["std"])
    image = _image()
    pixels, meta = preprocess_image(image, 64)
    assert meta.scale_factor == (64 / 56, 64 / 40) and meta.ori_shape == (40, 56)
    ours = pre(dict(inputs=pixels, data_samples=[DetSample(meta=meta)]))["inputs"]
    torch.testing.assert_close(ours, _original_fast_base_transform(image, 64, backbone), atol=1e-5, rtol=0)


def test_the_val_pipeline_feeds_the_same_numbers_as_preprocess_image():
    # forge-test / validation (pipeline.val = a keep_float square resize) and forge-infer on an official release
    image = _image()
    h, w = image.shape[:2]
    meta = ImageMeta(image_id=1, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))
    item = pack_sample(Compose([Resize(64, keep_float=True)])(dict(img=image.copy(), gt=Instances.empty(h, w),
                                                                   meta=meta)))
    pixels, infer_meta = preprocess_image(image, 64)
    assert torch.equal(item["inputs"][None], pixels)
    assert item["data_samples"].meta.scale_factor == pytest.approx(infer_meta.scale_factor)


def test_checkpoints_hold_no_normalisation_and_test_step_normalises():
    torch.manual_seed(0)
    net = Yolact(backbone="resnet18", **SMALL).eval()
    assert not [k for k in net.state_dict() if k.startswith("data_preprocessor")]
    pixels = torch.from_numpy(_image(64, 64)).permute(2, 0, 1)[None].contiguous()  # uint8, as a dataset yields
    meta = ImageMeta(image_id=3, ori_shape=(64, 64), img_shape=(64, 64), pad_shape=(64, 64))
    got = net.test_step(dict(inputs=pixels, data_samples=[DetSample(meta=meta)]))[0].pred
    x = (pixels.float() - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]
    want = net(x, [DetSample(meta=meta)], mode="predict")[0].pred
    assert len(want.scores) > 0
    torch.testing.assert_close(got.scores, want.scores)
    torch.testing.assert_close(got.boxes, want.boxes)
    # the exported graph starts with the same normalisation: pixel values in
    with torch.no_grad():
        exported = ExportWrapper(net)(pixels.float())
        direct = net.forward_tensor(x)
    torch.testing.assert_close(exported[0], direct["boxes"])
    torch.testing.assert_close(exported[1], direct["cls_logits"].softmax(-1))


def test_a_run_without_a_val_pipeline_is_named(tmp_path):
    from omegaconf import OmegaConf

    from yolact.infer import run_preprocess

    old = OmegaConf.create({"dataset": {"val_pipeline": [{"_target_": "forge.data.transforms.Resize", "size": 8}]}})
    with pytest.raises(ValueError, match="no pipeline.val .it has dataset.val_pipeline"):
        run_preprocess(old)


@pytest.mark.parametrize("name", ["yolact_base", "yolact_resnet50", "yolact_darknet53", "yolact_im700",
                                  "yolact_plus_base", "yolact_plus_resnet50"])
def test_model_configs_and_the_official_default_agree(name):
    # official releases are built from the architecture keys alone, so they get input_normalization(backbone): it
    # must be what each model config sets on its model
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from yolact.configs import MODEL_CONFIG_DIR

    cfg = OmegaConf.load(MODEL_CONFIG_DIR / f"{name}.yaml")
    pre = instantiate(cfg.data_preprocessor)
    norm = input_normalization(cfg.backbone)
    assert pre.mean.flatten().tolist() == pytest.approx(norm["mean"]) and not pre.rgb_to_bgr
    assert pre.std.flatten().tolist() == pytest.approx(norm["std"])
