"""SAM + CLIP baselines: image crops and feature crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from denseclip import build_clip
from ovsam import CLIPResNetBackbone, classify
from ovsam.baselines import crop_boxes, feature_crop_logits, image_crop_logits

from .tiny import TINY_RN, tiny_clip2sam


def test_crop_boxes():
    b = torch.tensor([[10.2, 20.0, 30.0, 40.7], [90.0, 0.0, 120.0, 10.0]])
    assert crop_boxes(b, 50, 100).tolist() == [[10, 20, 30, 41], [90, 0, 100, 10]]
    assert crop_boxes(torch.tensor([[10.0, 10, 20, 20]]), 50, 100, expand=2.0).tolist() == [[5, 5, 25, 25]]


def test_image_crop_equals_clip_on_the_crop():
    torch.manual_seed(0)
    clip = build_clip(TINY_RN).eval()
    img = torch.randint(0, 255, (3, 60, 80), dtype=torch.uint8)
    cls = F.normalize(torch.randn(4, 32), dim=-1)
    out = image_crop_logits(clip, img, torch.tensor([[8.0, 4, 40, 50]]), cls)
    patch = F.interpolate(img[:, 4:50, 8:40].float()[None], size=(64, 64), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 255)
    x = (patch - torch.tensor(OPENAI_DATASET_MEAN)[:, None, None] * 255) / (
        torch.tensor(OPENAI_DATASET_STD)[:, None, None] * 255)
    with torch.no_grad():
        want = classify(clip.encode_image(x), cls)
    torch.testing.assert_close(out, want)
    assert out.shape == (1, 5)


def test_feature_crop_is_clip2sams_frozen_branch():
    model = tiny_clip2sam()
    x = torch.randn(1, 3, 256, 256)
    boxes = torch.tensor([[10.0, 20, 120, 200], [0, 0, 256, 256]])
    cls = F.normalize(torch.randn(3, 32), dim=-1)
    with torch.no_grad():
        want = model.clip_logits(model.backbone(x)[-1], boxes, cls)
    assert isinstance(model.backbone, CLIPResNetBackbone)
    torch.testing.assert_close(feature_crop_logits(model.backbone, x, boxes, cls), want)
