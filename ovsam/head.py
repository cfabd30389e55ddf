"""CLIP2SAM's trainable parts: a light FPN on the frozen CLIP levels, SAM's mask decoder cut to one mask token
without the IoU head, and the recognition branch (RoIAlign over the FPN -> 1x1 conv -> mean pool -> cosine x 100
with the text classifier).

Names follow the official ``FPN`` (mmdet), ``SingleRoIExtractor`` and ``OVSAMHead``: ``lateral_convs.i.conv``,
``fpn_convs.i.conv``; ``mask_decoder.{transformer, mask_tokens, output_upscaling, output_hypernetworks_mlps.0}``,
``label_token``, ``label_mlp``, ``roi_conv.0.conv``. The official head also builds ``label_token`` / ``label_mlp``,
but multiplies their output by 0 (classification comes from the RoI features only); we keep the parameters so its
files load, and compute the same thing without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from edgesam.common import MLP, LayerNorm2d
from edgesam.transformer import TwoWayTransformer

#: ``exp(4.6052)``: the official logit scale (a fixed buffer) -> 100.
LOGIT_SCALE = 100.0


class _ConvModule(nn.Module):
    """mmcv ``ConvModule`` key layout (``.conv``), optional ReLU (its default activation)."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class FPN(nn.Module):
    """mmdet ``FPN`` with ``num_outs == len(in_channels)``: 1x1 laterals, top-down nearest upsampling to the finer
    size, 3x3 output convs, all with bias and no norm / activation."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(_ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(_ConvModule(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.fpn_convs, lat)]


def map_roi_levels(boxes: Tensor, num_levels: int, finest_scale: float = 56.0) -> Tensor:
    """mmdet ``SingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt(area) / 56 + 1e-6))`` clamped to the levels."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, num_levels - 1).long()


def multilevel_roi_align(feats: Sequence[Tensor], rois: Tensor, strides: Sequence[int], output_size: int = 12
                         ) -> Tensor:
    """RoIAlign of each RoI on its FPN level (mmcv ``RoIAlign(aligned=True, sampling_ratio=0)`` = torchvision's).

    Args:
        feats: level maps ``(B, C, H_l, W_l)``.
        rois: ``(N, 5)`` rows ``(batch index, x1, y1, x2, y2)`` in input pixels.
    Returns:
        ``(N, C, output_size, output_size)``.
    """
    out = feats[0].new_zeros(rois.shape[0], feats[0].shape[1], output_size, output_size)
    if rois.shape[0] == 0:
        return out
    levels = map_roi_levels(rois[:, 1:], len(feats))
    for lvl, (f, s) in enumerate(zip(feats, strides)):
        idx = torch.nonzero(levels == lvl).flatten()
        if idx.numel():
            out[idx] = roi_align(f, rois[idx], output_size, spatial_scale=1.0 / s, sampling_ratio=0, aligned=True)
    return out


def masks_to_boxes_exclusive(masks: Tensor) -> Tensor:
    """mmdet ``mask2bbox``: ``(N, H, W)`` bool -> ``(N, 4)`` ``(x_first, y_first, x_last + 1, y_last + 1)``, zeros
    for an empty mask."""
    n = masks.shape[0]
    boxes = torch.zeros(n, 4, dtype=torch.float32, device=masks.device)
    xs, ys = masks.any(dim=1), masks.any(dim=2)
    for i in range(n):
        x, y = torch.nonzero(xs[i]).flatten(), torch.nonzero(ys[i]).flatten()
        if x.numel() and y.numel():
            boxes[i] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    return boxes


class SingleMaskDecoder(nn.Module):
    """SAM's mask decoder with ``num_mask_tokens`` (1) tokens and no IoU token / head (official ``with_iou=False``)."""

    def __init__(self, transformer_dim: int = 256, num_mask_tokens: int = 1, num_heads: int = 8,
                 mlp_dim: int = 2048) -> None:
        super().__init__()
        # SAM's decoder sizes by default; a smaller SAM (e.g. the shapes demo's) passes its own
        self.transformer = TwoWayTransformer(depth=2, embedding_dim=transformer_dim, num_heads=num_heads,
                                             mlp_dim=mlp_dim)
        self.num_mask_tokens = num_mask_tokens
        self.mask_tokens = nn.Embedding(num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4), nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(num_mask_tokens))


class OVSAMHead(nn.Module):
    """Mask decoder + recognition head of CLIP2SAM.

    Args:
        clip_dim: CLIP embedding width (RN50x16: 768).
        roi_channels: FPN width (256).
        strides: FPN strides (4, 8, 16, 32).
        roi_size: RoIAlign output (12).
        num_heads, mlp_dim: the two-way transformer's (SAM: 8, 2048).
    """

    def __init__(self, clip_dim: int = 768, transformer_dim: int = 256, roi_channels: int = 256,
                 strides: Sequence[int] = (4, 8, 16, 32), roi_size: int = 12, num_heads: int = 8,
                 mlp_dim: int = 2048) -> None:
        super().__init__()
        self.mask_decoder = SingleMaskDecoder(transformer_dim, num_heads=num_heads, mlp_dim=mlp_dim)
        self.label_token = nn.Embedding(1, transformer_dim)
        self.label_mlp = MLP(transformer_dim, transformer_dim, clip_dim, 3)
        # official ConvModule(..., bias=False) keeps mmcv's default ReLU
        self.roi_conv = nn.Sequential(_ConvModule(roi_channels, clip_dim, 1, bias=False, relu=True))
        self.strides = tuple(strides)
        self.roi_size = roi_size

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor) -> Tensor:
        """Low-res mask logits ``(N, 1, 4h, 4w)`` for ``N`` prompts.

        Args:
            image_embeddings: ``(N, C, h, w)`` one per prompt (or ``(1, C, h, w)`` shared).
            image_pe: ``(1, C, h, w)``; sparse: ``(N, T, C)``; dense: ``(N, C, h, w)``.
        """
        dec = self.mask_decoder
        n = sparse.shape[0]
        # the label token is decoded with the others (it changes the attention), its output is unused
        tokens = torch.cat([self.label_token.weight, dec.mask_tokens.weight], dim=0)[None].expand(n, -1, -1)
        queries = torch.cat([tokens, sparse], dim=1)
        src = image_embeddings.expand(n, -1, -1, -1) + dense
        pos = image_pe.expand(n, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = dec.transformer(src, pos, queries)
        mask_embeds = hs[:, 1:1 + dec.num_mask_tokens]
        up = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = torch.stack([mlp(mask_embeds[:, i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
        _, cu, hu, wu = up.shape
        return (hyper @ up.reshape(n, cu, hu * wu)).reshape(n, -1, hu, wu)

    def roi_embeddings(self, fpn_feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        """``(N, 5)`` RoIs -> ``(N, clip_dim)`` region embeddings (RoIAlign, 1x1 conv + ReLU, mean pool)."""
        feats = multilevel_roi_align(fpn_feats, rois, self.strides, self.roi_size)
        return self.roi_conv(feats).mean(dim=(-2, -1))


def classify(embeddings: Tensor, classifier: Tensor, scale: float = LOGIT_SCALE) -> Tensor:
    """Cosine logits with a zero background column (the official ``forward_logit``).

    Args:
        embeddings: ``(N, D)`` region embeddings (normalised here).
        classifier: ``(K, D)`` unit class embeddings, or ``(K, P, D)`` with ``P`` prototypes (synonyms) per class:
            a class scores its best prototype.
    Returns:
        ``(N, K + 1)``: ``scale * cos`` per class, then 0 for background (a zero, fixed embedding, as the official
        ``back_token = torch.zeros``).
    """
    cls = classifier if classifier.dim() == 3 else classifier[:, None]
    cos = torch.einsum("nd,kpd->nkp", F.normalize(embeddings, dim=-1), cls.to(embeddings.dtype)).amax(-1)
    return torch.cat([scale * cos, cos.new_zeros(cos.shape[0], 1)], dim=1)
