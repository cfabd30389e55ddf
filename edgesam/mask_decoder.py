"""SAM's mask decoder (Kirillov et al., 2023, App. A): output tokens (IoU + 4 mask tokens) and the prompt tokens go
through the two-way transformer; the image tokens are upscaled 4x and each mask token's hypernetwork MLP gives the
weights of a dot product with them; the IoU token predicts each mask's quality. Names follow ``segment_anything``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgesam.common import MLP, LayerNorm2d


class MaskDecoder(nn.Module):
    """``num_multimask_outputs + 1`` masks: token 0 is the single-mask output, tokens 1..3 the multimask outputs.

    Args:
        transformer_dim: token / image-embedding width (256).
        transformer: the ``TwoWayTransformer``.
        num_multimask_outputs: masks returned for ambiguous prompts (3).
        iou_head_depth, iou_head_hidden_dim: the IoU MLP (3 layers, 256).
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 activation: type[nn.Module] = nn.GELU, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, multimask_output: bool) -> tuple[Tensor, Tensor]:
        """Masks and IoU predictions for ``B`` prompts.

        Args:
            image_embeddings: ``(1, C, h, w)`` (shared by every prompt) or ``(B, C, h, w)`` (one per prompt).
            image_pe: ``(1, C, h, w)`` positional encoding of the embedding grid.
            sparse_prompt_embeddings: ``(B, N, C)``; dense_prompt_embeddings: ``(B, C, h, w)``.
            multimask_output: the three multimask outputs instead of the single one.

        Returns:
            low-res mask logits ``(B, K, 4h, 4w)`` and IoU predictions ``(B, K)``, K = 3 or 1.
        """
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                        dense_prompt_embeddings)
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou[:, keep]

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                      dense_prompt_embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """All ``num_mask_tokens`` masks ``(B, 4, 4h, 4w)`` and IoU predictions ``(B, 4)``."""
        b = sparse_prompt_embeddings.shape[0]
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {b} prompts (expected 1 or {b})")
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens[None].expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings.expand(b, -1, -1, -1) + dense_prompt_embeddings
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, 0]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                               dim=1)  # (B, 4, C/8)
        _, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        return masks, self.iou_prediction_head(iou_token_out)
