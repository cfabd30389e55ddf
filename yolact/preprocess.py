"""Image -> network input, as the original's evaluation transform (``FastBaseTransform``).

Resize to ``max_size x max_size`` with bilinear interpolation (aspect ratio not kept), then ResNet:
``(x - PIXEL_MEAN) / PIXEL_STD`` per RGB channel, DarkNet: ``x / 255``. The result is RGB ``(1, 3, S, S)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from forge.data.structures import ImageMeta

PIXEL_MEAN = (123.68, 116.78, 103.94)  # RGB, 0-255 (the original's BGR MEANS reordered)
PIXEL_STD = (58.40, 57.12, 57.38)


def normalize(images: Tensor, backbone: str) -> Tensor:
    """``(B, 3, H, W)`` RGB float 0-255 -> network input for ``backbone``."""
    if backbone == "darknet53":
        return images / 255.0
    mean = images.new_tensor(PIXEL_MEAN)[None, :, None, None]
    std = images.new_tensor(PIXEL_STD)[None, :, None, None]
    return (images - mean) / std


def preprocess_image(image: np.ndarray, max_size: int = 550, backbone: str = "resnet101",
                     image_id: int = 0, file_name: str = "", device: torch.device | str = "cpu"
                     ) -> tuple[Tensor, ImageMeta]:
    """One ``(H, W, 3)`` uint8 RGB image -> ``((1, 3, S, S) input, ImageMeta)`` with ``S = max_size``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess_image: {file_name or 'image'} must be (H, W, 3) RGB, got {image.shape}")
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(device).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, (max_size, max_size), mode="bilinear", align_corners=False)
    meta = ImageMeta(image_id=image_id, file_name=file_name, ori_shape=(h, w), img_shape=(max_size, max_size),
                     pad_shape=(max_size, max_size), scale_factor=(max_size / w, max_size / h))
    return normalize(x, backbone), meta
