"""The paper's two-stage baselines: SAM (any ``edgesam.Sam``) for the mask, then CLIP for the name.

* image crop — the prompt box cut from the image (``expand`` x its size around its centre, clipped to the image),
  resized to CLIP's input side (bicubic, antialiased), CLIP's own mean / std, ``encode_image``, cosine x 100 with
  the text classifier (zero background column, as :func:`ovsam.classify`);
* feature crop — one CLIP pass over the whole image, RoIAlign of the box on the stride-32 map to the attention-pool
  grid, CLIP's attention pool, cosine x 100 (what :meth:`ovsam.CLIP2SAM.clip_logits` computes).

Harness wiring (forge-test) is not done; see ``docs/ovsam.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor
from torchvision.ops import roi_align

from .backbone import CLIPResNetBackbone
from .head import classify


def crop_boxes(boxes: Tensor, height: int, width: int, expand: float = 1.0) -> Tensor:
    """``(N, 4)`` xyxy scaled by ``expand`` about their centres, clipped to the image, integer pixel bounds with at
    least one pixel."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * expand / 2
    lo = (c - half).floor().clamp(min=0)
    hi = (c + half).ceil()
    hi = torch.stack([hi[:, 0].clamp(max=width), hi[:, 1].clamp(max=height)], 1)
    return torch.cat([lo, torch.maximum(hi, lo + 1)], 1).long()


@torch.no_grad()
def image_crop_logits(clip, image: Tensor, boxes: Tensor, classifier: Tensor, expand: float = 1.0) -> Tensor:
    """``image (3, H, W)`` uint8 / 0-255, ``boxes (N, 4)`` in its pixels -> ``(N, K + 1)`` logits.

    ``clip``: open_clip ``CLIP`` (``visual.image_size`` is the crop side)."""
    side = clip.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else int(side)
    mean = torch.tensor(OPENAI_DATASET_MEAN)[:, None, None] * 255
    std = torch.tensor(OPENAI_DATASET_STD)[:, None, None] * 255
    crops = []
    for x0, y0, x1, y1 in crop_boxes(boxes, image.shape[1], image.shape[2], expand).tolist():
        patch = image[:, y0:y1, x0:x1].float()[None]
        patch = F.interpolate(patch, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
        crops.append((patch[0].clamp(0, 255) - mean) / std)
    device = next(clip.parameters()).device
    emb = clip.encode_image(torch.stack(crops).to(device)).float()
    return classify(emb, classifier.to(emb.device))


@torch.no_grad()
def feature_crop_logits(backbone: CLIPResNetBackbone, images: Tensor, boxes: Tensor, classifier: Tensor) -> Tensor:
    """``images (1, 3, S, S)`` normalised as the backbone expects, ``boxes (N, 4)`` in that frame -> logits."""
    c5 = backbone(images)[-1]
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], 1)
    feats = roi_align(c5, rois, backbone.feat_size, spatial_scale=1 / 32.0, sampling_ratio=0, aligned=True)
    return classify(backbone.pool(feats), classifier)
