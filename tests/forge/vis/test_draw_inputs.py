"""The drawing hooks take the batch as datasets yield it: pixel values, no mean/std to undo."""

from __future__ import annotations

import numpy as np
import torch

from forge.data.structures import Detections, DetSample, ImageMeta, Instances
from forge.vis.classification import draw_classification
from forge.vis.detection import draw_detections


def test_detection_fallback_draws_the_batch_pixels():
    # no image file: the picture is the batch's (uint8 pixel) image, cropped to img_shape, at ori_shape
    img = torch.zeros((1, 3, 8, 10), dtype=torch.uint8)
    img[0, 0] = 200  # red
    meta = ImageMeta(image_id=1, ori_shape=(6, 8), img_shape=(6, 8), pad_shape=(8, 10))
    sample = DetSample(meta=meta, gt=Instances.empty(8, 10), pred=Detections.empty())
    out = draw_detections(dict(inputs=img, data_samples=[sample]), [sample], 0, with_gt=False)
    assert out.shape == (6 + 12, 8, 3) and out.dtype == np.uint8
    assert (out[12:, :, 0] == 200).all() and (out[12:, :, 1:] == 0).all()


def test_classification_draws_pixel_values():
    x = torch.full((1, 1, 4, 4), 255.0)
    out = draw_classification(dict(inputs=x), [dict(pred_label=3, gt_label=3)], 0, size=8)
    assert out.shape == (8 + 14, 8, 3) and (out[:8] == 255).all()
