"""SAM's input convention: resize so that the longest side is the model input size (aspect kept, sizes rounded to
the nearest pixel), then pad bottom/right to a square (done by ``Sam.preprocess``); and the inverse mappings of
points, boxes and masks back to the original image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from forge.ops import scale_boxes


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """``(h, w)`` after scaling ``(height, width)`` so that the longer side is ``long_side`` (round half up)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class ResizeLongestSide:
    """Maps an image of ``original_size = (H, W)`` and its prompts into the frame of a ``long_side`` model input,
    and back. Points are ``(..., 2)`` (x, y) pixels, boxes ``(..., 4)`` xyxy pixels."""

    def __init__(self, long_side: int) -> None:
        self.long_side = long_side

    def scale(self, original_size: Sequence[int]) -> tuple[float, float]:
        """``(sx, sy)`` from original to resized pixels (per axis: the rounding makes them differ slightly)."""
        h, w = int(original_size[0]), int(original_size[1])
        nh, nw = resized_shape(h, w, self.long_side)
        return nw / w, nh / h

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` uint8, PIL bilinear (the resampling the official predictor uses)."""
        nh, nw = resized_shape(image.shape[0], image.shape[1], self.long_side)
        return np.array(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))

    # the products are taken in float64 and returned as float32, as the official numpy path does
    def apply_coords(self, coords: Tensor, original_size: Sequence[int]) -> Tensor:
        sx, sy = self.scale(original_size)
        return (coords.double() * coords.new_tensor([sx, sy], dtype=torch.float64)).float()

    def apply_boxes(self, boxes: Tensor, original_size: Sequence[int]) -> Tensor:
        return scale_boxes(boxes.double(), self.scale(original_size)).float()

    def invert_coords(self, coords: Tensor, original_size: Sequence[int]) -> Tensor:
        sx, sy = self.scale(original_size)
        return (coords.double() / coords.new_tensor([sx, sy], dtype=torch.float64)).float()

    def invert_boxes(self, boxes: Tensor, original_size: Sequence[int]) -> Tensor:
        sx, sy = self.scale(original_size)
        return scale_boxes(boxes.double(), (1.0 / sx, 1.0 / sy)).float()
