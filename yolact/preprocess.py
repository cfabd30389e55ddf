"""Image -> network input, as the original's evaluation transform (``FastBaseTransform``), split as forge splits it.

The original resizes to ``max_size x max_size`` with bilinear interpolation in float (aspect ratio not kept), then
normalises: ResNet ``(x - MEANS) / STD`` per channel, DarkNet ``x / 255``, with the result in RGB order. Here the
resize is :func:`preprocess_image` (pixel values out, as every forge dataset yields them) and the normalisation is
the model's data preprocessor (:class:`forge.models.ImagePreprocessor`), whose YOLACT values are
:func:`input_normalization` -- the same numbers in the model configs (``forge/configs/model/yolact/*.yaml``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from forge.data.structures import ImageMeta
from forge.models import ImagePreprocessor

PIXEL_MEAN = (123.68, 116.78, 103.94)  # RGB, 0-255 (the original's BGR MEANS reordered)
PIXEL_STD = (58.40, 57.12, 57.38)
DARKNET_MEAN = (0.0, 0.0, 0.0)  # DarkNet-53 sees RGB / 255
DARKNET_STD = (255.0, 255.0, 255.0)


def input_normalization(backbone: str) -> dict[str, tuple[float, float, float]]:
    """``dict(mean=..., std=...)`` (RGB, pixel units) the released weights of ``backbone`` were trained with."""
    if backbone == "darknet53":
        return dict(mean=DARKNET_MEAN, std=DARKNET_STD)
    return dict(mean=PIXEL_MEAN, std=PIXEL_STD)


def default_preprocessor(backbone: str) -> ImagePreprocessor:
    """The data preprocessor of a YOLACT model built without one (official releases): :func:`input_normalization`."""
    return ImagePreprocessor(**input_normalization(backbone))


def preprocess_image(image: np.ndarray, max_size: int = 550, image_id: int = 0, file_name: str = "",
                     device: torch.device | str = "cpu") -> tuple[Tensor, ImageMeta]:
    """One ``(H, W, 3)`` uint8 RGB image -> ``((1, 3, S, S) float32 pixel values, ImageMeta)`` with ``S = max_size``:
    the original's float bilinear resize, **not** normalised (``model.data_preprocessor`` does that)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess_image: {file_name or 'image'} must be (H, W, 3) RGB, got {image.shape}")
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(device).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, (max_size, max_size), mode="bilinear", align_corners=False)
    meta = ImageMeta(image_id=image_id, file_name=file_name, ori_shape=(h, w), img_shape=(max_size, max_size),
                     pad_shape=(max_size, max_size), scale_factor=(max_size / w, max_size / h))
    return x, meta
