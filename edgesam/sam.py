"""The Segment Anything model: an image encoder (SAM ViT, MobileSAM's TinyViT or EdgeSAM's RepViT), SAM's prompt
encoder and mask decoder; the model owns its pixel normalisation and the pad / unpad of its square input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.mask_decoder import MaskDecoder
from edgesam.prompt_encoder import PromptEncoder
from forge.ops import resize_masks

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """``image_encoder`` maps a normalised, padded ``(B, 3, S, S)`` image to ``(B, 256, S/16, S/16)``; it must have
    an ``img_size`` attribute (S). ``pixel_mean`` / ``pixel_std`` are RGB 0-255 statistics (non-persistent buffers,
    as in the official checkpoints)."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 pixel_mean: Sequence[float] = PIXEL_MEAN, pixel_std: Sequence[float] = PIXEL_STD) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def img_size(self) -> int:
        return int(self.image_encoder.img_size)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, x: Tensor) -> Tensor:
        """``(..., 3, h, w)`` RGB 0-255 with ``max(h, w) <= img_size`` -> normalised, zero-padded bottom/right to
        ``(..., 3, img_size, img_size)``."""
        h, w = x.shape[-2:]
        if max(h, w) > self.img_size:
            raise ValueError(f"image of {h}x{w} is larger than the model input {self.img_size}; resize it first")
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(self, masks: Tensor, input_size: Sequence[int], original_size: Sequence[int]) -> Tensor:
        """Low-res logits ``(B, K, h, w)`` -> logits ``(B, K, H, W)`` at ``original_size``: bilinear to the padded
        input, crop the padding (``input_size`` = resized image before padding), bilinear to the original size."""
        b, k = masks.shape[:2]
        flat = masks.reshape(b * k, *masks.shape[2:])
        flat = resize_masks(flat, (self.img_size, self.img_size), None, output_shape=tuple(input_size))
        flat = resize_masks(flat, tuple(original_size), None)
        return flat.reshape(b, k, *flat.shape[1:])

    def decode(self, image_embeddings: Tensor, points: tuple[Tensor, Tensor] | None = None,
               boxes: Tensor | None = None, mask_inputs: Tensor | None = None,
               multimask_output: bool = True) -> tuple[Tensor, Tensor]:
        """Prompt encoder + mask decoder for B prompts on one image (``image_embeddings (1, C, h, w)``) or on one
        image each (``(B, C, h, w)``); coordinates in the padded input frame. Returns low-res logits
        ``(B, K, 4h, 4w)`` and IoU predictions ``(B, K)``."""
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        return self.mask_decoder(image_embeddings=image_embeddings, image_pe=self.prompt_encoder.get_dense_pe(),
                                 sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                 multimask_output=multimask_output)

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, Tensor]]:
        """End-to-end prediction, as ``segment_anything.Sam.forward``.

        Each record: ``image`` ``(3, h, w)`` already resized (longest side ``img_size``), ``original_size`` (H, W),
        optional ``point_coords (B, N, 2)`` + ``point_labels (B, N)``, ``boxes (B, 4)``, ``mask_inputs
        (B, 1, 4h, 4w)`` in the resized frame. Returns per image ``masks`` (bool, original size),
        ``iou_predictions`` and ``low_res_logits``.
        """
        images = torch.stack([self.preprocess(r["image"]) for r in batched_input])
        embeddings = self.image_encoder(images)
        outputs = []
        for record, emb in zip(batched_input, embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            low, iou = self.decode(emb[None], points, record.get("boxes"), record.get("mask_inputs"),
                                   multimask_output)
            masks = self.postprocess_masks(low, record["image"].shape[-2:], record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low})
        return outputs
