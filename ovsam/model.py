"""OVSAM's models as plain torch modules with the official attribute names.

* :class:`SAM2CLIPDistill` — ``backbone_student`` (frozen CLIP ResNet) + ``neck_student`` (:class:`SAM2CLIP`):
  the official ``BackboneDistillation`` with the cached teacher (``sam2clip_vith_rn50x16.pth``).
* :class:`CLIP2SAM` — ``backbone`` (frozen CLIP), ``neck`` (frozen SAM2CLIP), ``pe`` (frozen SAM prompt encoder),
  ``fpn_neck`` and ``mask_decoder`` (:class:`OVSAMHead`, trainable); ``clip2sam_{coco,lvis}_rn50x16.pth``.

Images enter as the official preprocessor gives them: RGB, SAM's mean / std (0-255 scale), longest side resized to
1024 and zero-padded bottom-right to 1024 x 1024 (:func:`preprocess`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from denseclip import build_clip
from edgesam.prompt_encoder import PromptEncoder
from edgesam.transforms import ResizeLongestSide

from .backbone import CLIPResNetBackbone
from .fusion import ALPHA, BETA, fuse_scores
from .head import FPN, OVSAMHead, classify, masks_to_boxes_exclusive
from .sam2clip import SAM2CLIP

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
MASK_THRESHOLD = 0.5  # on sigmoid probabilities, as the official


def preprocess(image: np.ndarray, size: int = 1024) -> tuple[Tensor, tuple[int, int]]:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, size, size)`` normalised, padded tensor and the resized ``(h, w)``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    resized = ResizeLongestSide(size).apply_image(image)
    h, w = resized.shape[:2]
    x = torch.as_tensor(np.ascontiguousarray(resized)).permute(2, 0, 1).float()
    x = (x - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]
    return F.pad(x, (0, size - w, 0, size - h))[None], (h, w)


def clip_backbone(arch: str | dict = "RN50x16", device: str | torch.device = "cpu") -> CLIPResNetBackbone:
    """An untrained CLIP ResNet backbone (weights come from a CLIP file or an OVSAM checkpoint)."""
    return CLIPResNetBackbone(build_clip(arch, device=device).visual)


class SAM2CLIPDistill(nn.Module):
    """Frozen CLIP + SAM2CLIP adapter; ``forward(images) -> (B, 256, 64, 64)`` SAM-like embeddings."""

    def __init__(self, backbone: CLIPResNetBackbone, embed_dim: int = 1280, input_size: int = 1024, **kw) -> None:
        super().__init__()
        self.backbone_student = backbone
        self.neck_student = SAM2CLIP(backbone.out_channels, embed_dim=embed_dim, input_size=input_size, **kw)

    def forward(self, images: Tensor) -> Tensor:
        return self.neck_student(self.backbone_student(images))


@dataclass
class Prediction:
    """Per prompt: low-res mask logits ``(N, 1, 256, 256)``, fused log-scores ``(N, K + 1)`` (background last),
    the head's and frozen CLIP's logits, and the boxes used for recognition (input frame)."""

    low_res_masks: Tensor
    scores: Tensor
    head_logits: Tensor
    clip_logits: Tensor | None
    boxes: Tensor


class CLIP2SAM(nn.Module):
    """Open-Vocabulary SAM.

    Args:
        backbone: frozen CLIP ResNet.
        embed_dim: SAM2CLIP width (SAM ViT-H: 1280).
        input_size: square encoder input (1024).
        fpn_channels: light-FPN width (256).
        prompt_dim: SAM's prompt / embedding width (256): SAM2CLIP's output channels, the prompt encoder's and
            the mask decoder's width.
        decoder_heads, decoder_mlp_dim: SAM's two-way transformer (8, 2048). The defaults are SAM's; a smaller
            SAM (the shapes demo's) passes its own, so its prompt encoder and decoder weights fit.
    """

    def __init__(self, backbone: CLIPResNetBackbone, embed_dim: int = 1280, input_size: int = 1024,
                 fpn_channels: int = 256, sam2clip_kwargs: dict | None = None, prompt_dim: int = 256,
                 decoder_heads: int = 8, decoder_mlp_dim: int = 2048) -> None:
        super().__init__()
        self.backbone = backbone
        kw = dict(sam2clip_kwargs or {})
        if kw.setdefault("out_chans", prompt_dim) != prompt_dim:
            raise ValueError(f"sam2clip_kwargs out_chans={kw['out_chans']} differs from prompt_dim={prompt_dim}")
        self.neck = SAM2CLIP(backbone.out_channels, embed_dim=embed_dim, input_size=input_size, **kw)
        grid = input_size // 16
        self.pe = PromptEncoder(prompt_dim, (grid, grid), (input_size, input_size), mask_in_chans=16)
        self.fpn_neck = FPN(backbone.out_channels, fpn_channels)
        self.mask_decoder = OVSAMHead(clip_dim=backbone.embed_dim, transformer_dim=prompt_dim,
                                      roi_channels=fpn_channels, num_heads=decoder_heads, mlp_dim=decoder_mlp_dim)
        self.input_size = input_size
        self.freeze_frozen_parts()

    def freeze_frozen_parts(self) -> None:
        """CLIP, SAM2CLIP and the prompt encoder are frozen in CLIP2SAM (the official ``fix=True``)."""
        for module in (self.backbone, self.neck, self.pe):
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> CLIP2SAM:
        super().train(mode)
        for module in (self.backbone, self.neck, self.pe):
            module.train(False)
        return self

    def features(self, images: Tensor) -> tuple[tuple[Tensor, ...], Tensor, list[Tensor]]:
        """CLIP levels, SAM2CLIP embeddings ``(B, 256, 64, 64)`` and FPN levels for ``(B, 3, S, S)`` inputs."""
        feats = self.backbone(images)
        with torch.no_grad():
            emb = self.neck(feats)
        return feats, emb, self.fpn_neck(feats)

    def prompt_embeddings(self, boxes: Tensor | None, points: Tensor | None) -> tuple[Tensor, Tensor]:
        """Official prompting: boxes ``(N, 4)`` xyxy, or positive points ``(N, P, 2)`` (label 1, padded)."""
        if (boxes is None) == (points is None):
            raise ValueError("give boxes or points (one kind per call, as the official model)")
        if points is not None:
            labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
            return self.pe((points, labels), None, None)
        return self.pe(None, boxes, None)

    def decode(self, emb: Tensor, boxes: Tensor | None = None, points: Tensor | None = None) -> Tensor:
        """Low-res mask logits ``(N, 1, S/4, S/4)`` for N prompts on one image embedding ``(1, 256, h, w)``."""
        sparse, dense = self.prompt_embeddings(boxes, points)
        return self.mask_decoder.predict_masks(emb, self.pe.get_dense_pe(), sparse, dense)

    def head_logits(self, fpn_feats: Sequence[Tensor], boxes: Tensor, classifier: Tensor,
                    batch_index: Tensor | None = None) -> Tensor:
        """Recognition logits ``(N, K + 1)`` from RoIs ``boxes (N, 4)`` (input frame) on the FPN."""
        idx = boxes.new_zeros(boxes.shape[0]) if batch_index is None else batch_index.to(boxes)
        rois = torch.cat([idx[:, None], boxes], dim=1)
        return classify(self.mask_decoder.roi_embeddings(fpn_feats, rois), classifier)

    @torch.no_grad()
    def clip_logits(self, clip_c5: Tensor, boxes: Tensor, classifier: Tensor) -> Tensor:
        """Frozen-CLIP RoI logits: RoIAlign on the stride-32 map to the attention-pool grid, CLIP's attention pool,
        cosine x 100 (the official ``use_clip_feat`` branch)."""
        s = self.backbone.feat_size
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        feats = roi_align(clip_c5, rois, s, spatial_scale=1 / 32.0, sampling_ratio=0, aligned=True)
        return classify(self.backbone.pool(feats), classifier)

    @torch.no_grad()
    def predict(self, images: Tensor, classifier: Tensor, boxes: Tensor | None = None, points: Tensor | None = None,
                base: Tensor | None = None, clip_boxes: Tensor | None = None, alpha: float = ALPHA,
                beta: float = BETA, use_clip: bool = True) -> Prediction:
        """Masks and fused class scores for prompts on one image ``(1, 3, S, S)``.

        Args:
            classifier: ``(K, D)`` or ``(K, P, D)`` unit text embeddings.
            boxes / points: the prompts in the input frame.
            base: ``(K,)`` bool, classes seen in training (default: none, i.e. every class is novel).
            clip_boxes: boxes for the frozen-CLIP RoIs (the official evaluation passes GT boxes even for point
                prompts); default the prompt boxes, else the boxes of the predicted masks.
        """
        if images.shape[0] != 1:
            raise ValueError(f"predict takes one image, got a batch of {images.shape[0]}")
        feats, emb, fpn = self.features(images)
        masks = self.decode(emb, boxes, points)
        # official gen_box: the recognition RoI is the predicted mask's box (low-res grid x 4)
        scale = self.input_size / masks.shape[-1]
        mask_boxes = masks_to_boxes_exclusive(masks[:, 0].sigmoid() > MASK_THRESHOLD) * scale
        head = self.head_logits(fpn, mask_boxes, classifier)
        k = head.shape[1] - 1
        base_mask = torch.zeros(k, dtype=torch.bool) if base is None else base.to(torch.bool).cpu()
        if not use_clip:
            return Prediction(masks, head.log_softmax(-1), head, None, mask_boxes)
        cb = clip_boxes if clip_boxes is not None else (boxes if boxes is not None else mask_boxes)
        clip = self.clip_logits(feats[-1], cb, classifier)
        small = F.interpolate(masks, size=feats[-1].shape[-2:], mode="bilinear", align_corners=False)
        valid = (small > 0).flatten(1).any(dim=1)
        fused = fuse_scores(head, clip, base_mask.to(head.device), valid, alpha, beta)
        return Prediction(masks, fused, head, clip, mask_boxes)
