"""Training prompts from a batch's annotations, and one decode of a SAM for a set of prompts.

EdgeSAM's phase 2 (official ``training/train.py`` with ``PROMPT_TYPE: [box, point]``): for each batch, box prompts
or point prompts with probability 1/2 each (the whole batch gets one kind), from at most ``max_per_image``
instances per image (16). A box prompt is the annotation's box; a point prompt is one positive point drawn uniformly
from the instance's mask (SA-1B's annotations carry such a point, ``point_coords``; for COCO-style data we draw it,
as the official ``PROMPT_MASK_TO_POINT`` option does). Where an image has more instances, ``max_per_image`` of
them are drawn without replacement (the official loader draws with replacement, so it may repeat one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from edgesam.prompts import box_prompts, random_points
from edgesam.sam import Sam
from forge.data.structures import DetSample

__all__ = ["PromptBatch", "sample_prompts", "decode", "MASK_TOKENS"]

# mask tokens decoded for a number of outputs: 1 = the single-mask token, 3 = the multimask tokens, 4 = all
# (EdgeSAM's ``MULTIMASK_OUTPUT: 4`` for point prompts)
MASK_TOKENS = {1: slice(0, 1), 3: slice(1, None), 4: slice(0, None)}


@dataclass
class PromptBatch:
    """P prompts over a batch: ``image_index (P,)``, ``boxes (P, 4)`` xyxy or None, ``points`` ``((P, N, 2),
    (P, N))`` or None (input-frame pixels), ``gt_masks (P, S, S)`` bool in the padded input frame, ``kind``."""

    image_index: Tensor
    boxes: Tensor | None
    points: tuple[Tensor, Tensor] | None
    gt_masks: Tensor
    kind: str

    def __len__(self) -> int:
        return int(self.image_index.numel())


def _instances(sample: DetSample, index: int, max_per_image: int, generator: torch.Generator | None):
    gt = sample.gt
    if gt is None or gt.masks is None:
        raise ValueError(f"image {sample.meta.file_name or sample.meta.image_id}: prompt training needs GT masks")
    keep = gt.masks.flatten(1).any(1)  # an instance can vanish in resizing
    if gt.iscrowd is not None:
        keep &= ~gt.iscrowd.bool()
    idx = keep.nonzero().flatten()
    if max_per_image > 0 and idx.numel() > max_per_image:
        idx = idx[torch.randperm(idx.numel(), generator=generator)[:max_per_image].to(idx.device)]
    return idx


def sample_prompts(data_samples: Sequence[DetSample], input_size: int, kind: str, max_per_image: int = 16,
                   generator: torch.Generator | None = None) -> PromptBatch | None:
    """Box (``kind='box'``) or single positive point (``'point'``) prompts for up to ``max_per_image`` GT instances
    of each image; None when the batch has no usable instance. GT masks are padded to ``input_size``."""
    if kind not in ("box", "point"):
        raise ValueError(f"prompt kind must be 'box' or 'point', got {kind!r}")
    index, boxes, masks = [], [], []
    for i, sample in enumerate(data_samples):
        idx = _instances(sample, i, max_per_image, generator)
        if idx.numel() == 0:
            continue
        m = sample.gt.masks[idx].bool()
        h, w = m.shape[-2:]
        if h > input_size or w > input_size:
            raise ValueError(f"image {sample.meta.file_name or sample.meta.image_id}: masks of {h}x{w} do not fit "
                             f"the model input {input_size}; resize the longest side to {input_size} in the pipeline")
        masks.append(F.pad(m, (0, input_size - w, 0, input_size - h)))
        boxes.append(box_prompts(sample.gt.boxes[idx]))
        index.append(torch.full((idx.numel(),), i, dtype=torch.int64))
    if not index:
        return None
    gt_masks = torch.cat(masks)
    image_index = torch.cat(index).to(gt_masks.device)
    if kind == "box":
        return PromptBatch(image_index, torch.cat(boxes).to(gt_masks.device), None, gt_masks, kind)
    pts = random_points(gt_masks, 1, generator=generator)
    labels = torch.ones(pts.shape[:2], dtype=torch.int64, device=pts.device)
    return PromptBatch(image_index, None, (pts, labels), gt_masks, kind)


def decode(sam: Sam, embeddings: Tensor, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None,
           num_masks: int = 1) -> tuple[Tensor, Tensor]:
    """Prompt encoder + mask decoder for P prompts, one embedding each (``(P, C, h, w)``) or shared (``(1, ...)``).

    Returns low-res logits ``(P, K, 4h, 4w)`` and IoU predictions ``(P, K)`` in float32, K = ``num_masks``
    (1: token 0, 3: tokens 1-3, 4: all four).
    """
    if num_masks not in MASK_TOKENS:
        raise ValueError(f"num_masks must be 1, 3 or 4, got {num_masks}")
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    logits, iou = sam.mask_decoder.predict_masks(embeddings, sam.prompt_encoder.get_dense_pe(), sparse, dense)
    keep = MASK_TOKENS[num_masks]
    return logits[:, keep].float(), iou[:, keep].float()
