"""SAM's prompt encoder: points, boxes and a low-res mask into sparse ``(B, N, 256)`` and dense ``(B, 256, h, w)``
embeddings (Kirillov et al., 2023, App. A "Prompt encoder").

Point labels: 1 foreground, 0 background, -1 padding ("not a point"), 2 / 3 top-left / bottom-right box corner (the
encoding the official ONNX export uses for boxes given as points), -2 ignored (zero embedding; EdgeSAM's label for
a refinement point that could not be sampled). Parameter names follow ``segment_anything``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgesam.common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features: ``[sin, cos](2 pi (2 p - 1) @ G)`` of points ``p`` in ``[0, 1]^2``, ``G ~ N(0, 1)``
    of shape ``(2, num_pos_feats)`` (a buffer: it is in the checkpoints)."""

    def __init__(self, num_pos_feats: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def encode(self, coords: Tensor) -> Tensor:
        """``(..., 2)`` normalised (x, y) -> ``(..., 2 * num_pos_feats)``."""
        proj = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def forward(self, size: tuple[int, int]) -> Tensor:
        """Encoding of the centres of an ``(h, w)`` grid: ``(C, h, w)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: Tensor, image_size: tuple[int, int]) -> Tensor:
        """``(B, N, 2)`` (x, y) pixels of an ``image_size = (H, W)`` input -> ``(B, N, C)``."""
        return self.encode(coords.float() / coords.new_tensor([image_size[1], image_size[0]], dtype=torch.float32))


class PromptEncoder(nn.Module):
    """Sparse (points, boxes) and dense (mask) prompt embeddings for the mask decoder.

    Args:
        embed_dim: prompt embedding dimension (256).
        image_embedding_size: ``(h, w)`` of the image embedding (64, 64 for a 1024 input).
        input_image_size: ``(H, W)`` of the padded encoder input, the frame of point and box coordinates.
        mask_in_chans: hidden channels of the mask downscaling path (16); a mask input is ``(B, 1, 4h, 4w)``.
    """

    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int], input_image_size: tuple[int, int],
                 mask_in_chans: int = 16, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: background point, 1: foreground point, 2 / 3: box corners
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """Positional encoding of the image embedding grid, ``(1, C, h, w)``."""
        return self.pe_layer(self.image_embedding_size)[None]

    def embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """``(B, N, 2)`` pixel (x, y) + ``(B, N)`` labels -> ``(B, N (+1), C)``; ``pad`` appends a not-a-point token
        (SAM's decoder was trained with one when no box is given)."""
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        pe = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        # padding and ignored points carry no position; each real label adds its learnt embedding
        emb = torch.where((labels == -1) | (labels == -2), torch.zeros_like(pe), pe)
        emb = emb + (labels == -1) * self.not_a_point_embed.weight
        for i, table in enumerate(self.point_embeddings):
            emb = emb + (labels == i) * table.weight
        return emb

    def embed_boxes(self, boxes: Tensor) -> Tensor:
        """``(B, 4)`` xyxy pixels -> ``(B, 2, C)`` corner embeddings."""
        corners = self.pe_layer.forward_with_coords(boxes.reshape(-1, 2, 2) + 0.5, self.input_image_size)
        return corners + torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])[None]

    def embed_masks(self, masks: Tensor) -> Tensor:
        """``(B, 1, 4h, 4w)`` mask logits -> ``(B, C, h, w)``."""
        if tuple(masks.shape[-2:]) != self.mask_input_size:
            raise ValueError(f"mask input must be (B, 1, {self.mask_input_size[0]}, {self.mask_input_size[1]}), "
                             f"got {tuple(masks.shape)}")
        return self.mask_downscaling(masks)

    def forward(self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None,
                masks: Tensor | None) -> tuple[Tensor, Tensor]:
        """Returns sparse ``(B, N, C)`` (points, then box corners) and dense ``(B, C, h, w)`` embeddings; B is the
        number of prompts, which every given prompt must share."""
        sizes = {name: t.shape[0] for name, t in
                 (("points", None if points is None else points[0]), ("boxes", boxes), ("masks", masks))
                 if t is not None}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"prompts disagree on the batch size: {sizes}")
        bs = next(iter(sizes.values()), 1)
        device = self.point_embeddings[0].weight.device
        sparse = [torch.empty(bs, 0, self.embed_dim, device=device)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return torch.cat(sparse, dim=1), dense
