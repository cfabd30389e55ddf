"""The model's data preprocessor: (x - mean) / std in the model's channel order, padding after normalisation, the
batch augmentations of classification in DeiT's order; it moves with the model and is not in its checkpoints."""

from __future__ import annotations

import pytest
import torch

from forge.data.collate import collate_detection
from forge.data.structures import DetSample, ImageMeta, Instances
from forge.models import ClsDataPreprocessor, ImagePreprocessor

MEAN, STD = (123.68, 116.78, 103.94), (58.40, 57.12, 57.38)


def _pixels(b: int = 2, h: int = 5, w: int = 7) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_normalize_is_the_formula_in_rgb_and_bgr_order():
    x = _pixels()
    ref = (x.double() - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) / torch.tensor(
        STD, dtype=torch.float64)[:, None, None]
    out = ImagePreprocessor(MEAN, STD).normalize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)
    # rgb_to_bgr reverses the channels first; mean/std are given in the network's (BGR) order: same numbers reversed
    bgr = ImagePreprocessor(MEAN[::-1], STD[::-1], rgb_to_bgr=True).normalize(x)
    torch.testing.assert_close(bgr.double(), ref.flip(1), atol=1e-5, rtol=0)
    # one value for every channel (the digits: 127.5 / 127.5 -> [-1, 1]), and no normalisation at all
    torch.testing.assert_close(ImagePreprocessor(127.5, 127.5).normalize(x), x.float() / 127.5 - 1.0)
    assert torch.equal(ImagePreprocessor().normalize(x), x.float())


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="both mean and std"):
        ImagePreprocessor(mean=MEAN)
    with pytest.raises(ValueError, match="std must be positive"):
        ImagePreprocessor(MEAN, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="differ in length"):
        ImagePreprocessor(MEAN, (1.0, 2.0))
    with pytest.raises(ValueError, match="2 mean/std values for 3-channel"):
        ImagePreprocessor((1.0, 2.0), (1.0, 2.0)).normalize(_pixels())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ImagePreprocessor(MEAN, STD).normalize(_pixels()[0])


def _det_item(h: int, w: int, value: int) -> dict:
    meta = ImageMeta(image_id=value, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))
    img = torch.full((3, h, w), value, dtype=torch.uint8)
    return dict(inputs=img, data_samples=DetSample(meta=meta, gt=Instances.empty(h, w)))


def test_padding_takes_pad_value_after_normalisation():
    batch = collate_detection([_det_item(4, 6, 200), _det_item(3, 2, 50)])
    assert batch["inputs"].dtype == torch.uint8
    out = ImagePreprocessor(MEAN, STD, pad_value=0.0)(batch)
    x = out["inputs"]
    assert x.shape == (2, 3, 4, 6) and x.dtype == torch.float32
    expect = (torch.tensor(50.0) - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(x[1, :, :3, :2], expect[:, None, None].expand(3, 3, 2))
    assert x[1, :, 3:, :].eq(0).all() and x[1, :, :, 2:].eq(0).all()  # 0 = the mean colour, as before the move
    assert x[0].ne(0).all()  # the full-size image has no padding
    assert [d.meta.image_id for d in out["data_samples"]] == [200, 50]
    shifted = ImagePreprocessor(MEAN, STD, pad_value=-3.0)(collate_detection([_det_item(4, 6, 1), _det_item(3, 2, 1)]))
    assert shifted["inputs"][1, :, 3:, :].eq(-3).all()


def test_buffers_follow_the_model_and_stay_out_of_checkpoints():
    pre = ImagePreprocessor(MEAN, STD)
    assert dict(pre.state_dict()) == {}  # official checkpoints, which hold no normalisation, still load strictly
    assert "mean=[123.68, 116.78, 103.94], std=[58.4, 57.12, 57.38], rgb_to_bgr=False" in repr(pre)
    assert pre.to("meta").mean.device.type == "meta" and pre.std.device.type == "meta"  # buffers move with it


def test_classification_augmentations_run_in_training_only_after_normalising():
    calls = []

    def erase(x):
        calls.append(("erase", float(x.mean())))
        return x * 0

    def mix(x, labels):
        calls.append(("mix", float(x.abs().sum())))
        return x + 1, torch.nn.functional.one_hot(labels, 3).float()

    pre = ClsDataPreprocessor(mean=127.5, std=127.5, random_erasing=erase, batch_augment=mix)
    data = dict(inputs=torch.full((2, 1, 4, 4), 255, dtype=torch.uint8), data_samples=dict(label=torch.tensor([0, 2])))
    out = pre(data, training=False)
    assert calls == [] and out["inputs"].eq(1.0).all() and "target" not in out["data_samples"]
    out = pre(data, training=True)
    assert calls == [("erase", 1.0), ("mix", 0.0)]  # erasing sees the normalised batch, Mixup the erased one
    assert out["inputs"].eq(1.0).all() and out["data_samples"]["target"].tolist() == [[1, 0, 0], [0, 0, 1]]


def test_timm_random_erasing_draws_on_the_batch_device():
    from timm.data.random_erasing import RandomErasing

    erasing = RandomErasing(probability=1.0, mode="pixel", max_count=1, device="meta")
    pre = ClsDataPreprocessor(mean=0.0, std=1.0, random_erasing=erasing)
    torch.manual_seed(0)
    out = pre(dict(inputs=torch.zeros(2, 3, 16, 16), data_samples=dict(label=torch.tensor([0, 1]))), training=True)
    assert erasing.device == torch.device("cpu") and out["inputs"].ne(0).any()
