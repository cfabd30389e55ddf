"""OVSAM training as mmengine models for the shared runner: SAM2CLIP distillation and CLIP2SAM.

* :class:`SAM2CLIPDistiller` — loss ``loss_distillation``: MSE (mean over every element, the official
  ``MSELoss(reduction='mean')``) between SAM2CLIP's output and the teacher's embeddings, the teacher an
  :class:`edgesam.distill.Teacher` (live SAM, or the ``forge-cache-embeddings`` cache); ``predict`` gives the
  per-image squared errors that :class:`ovsam.metric.FeatureMSEMetric` turns into the validation MSE.
* :class:`CLIP2SAMTrainer` — per image :func:`ovsam.losses.training_prompts` (40 prompts, boxes then points), the
  mask decoder on SAM2CLIP's embeddings, recognition on the GT boxes' RoIs (as the official training), losses
  ``loss_cls`` (CE x 2), ``loss_mask`` (BCE x 5), ``loss_dice`` (Dice x 5). An image whose ground truth has no masks
  (``gt.masks is None``: image-level labels, e.g. a folder of class-named images) contributes one prompt, the whole
  image's box, to the classification loss only.

Image-level data and the per-batch mixing are :mod:`ovsam.data`; the experiments are
``forge/configs/experiment/ovsam/``, their ``forge-test`` evaluation :class:`ovsam.evaluate.OVSAMEvaluator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from edgesam.distill.teacher import Teacher, pad_to
from forge.data.structures import DetSample
from forge.models import ImagePreprocessor

from .losses import classification_loss, mask_losses, training_prompts, uncertain_points
from .model import CLIP2SAM, PIXEL_MEAN, PIXEL_STD, SAM2CLIPDistill


def _preprocessor(cfg):
    return cfg if cfg is not None else ImagePreprocessor(mean=list(PIXEL_MEAN), std=list(PIXEL_STD))


class SAM2CLIPDistiller(BaseModel):
    """Stage 1: only ``student.neck_student`` trains (CLIP frozen)."""

    def __init__(self, student: SAM2CLIPDistill, teacher: Teacher, data_preprocessor=None) -> None:
        super().__init__(data_preprocessor=_preprocessor(data_preprocessor))
        self.student = student
        self.teacher = teacher

    def forward(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None, mode: str = "tensor"):
        images = pad_to(inputs.float(), self.student.neck_student.grid * 16)
        if mode == "loss":
            with torch.no_grad():
                target = self.teacher.embeddings(images, data_samples)
            return {"loss_distillation": F.mse_loss(self.student(images).float(), target)}
        if mode == "tensor":
            return self.student(images)
        if mode == "predict":  # per-image records for ovsam.metric.FeatureMSEMetric (the validation MSE)
            with torch.no_grad():
                target = self.teacher.embeddings(images, data_samples)
                err = (self.student(images).float() - target).square()
            return [dict(sq_err=float(e.sum()), numel=e.numel(), target_sum=t.double().cpu(),
                         target_sq=t.double().square().cpu()) for e, t in zip(err, target)]
        raise ValueError(f"SAM2CLIPDistiller supports modes 'loss', 'predict' and 'tensor', got {mode!r}")


class CLIP2SAMTrainer(BaseModel):
    """Stage 2: FPN + one-token decoder + recognition head train on GT instances.

    Args:
        model: the :class:`CLIP2SAM` (its frozen parts already loaded).
        classifier: ``(K, D)`` or ``(K, P, D)`` text classifier of the training classes (label order).
        num_prompts: prompts per image (40).
        num_points: sampled points per mask (12,544).
    """

    def __init__(self, model: CLIP2SAM, classifier: Tensor, num_prompts: int = 40, num_points: int = 12544,
                 data_preprocessor=None) -> None:
        super().__init__(data_preprocessor=_preprocessor(data_preprocessor))
        self.model = model
        self.register_buffer("classifier", classifier.float().clone(), persistent=False)
        self.num_prompts = num_prompts
        self.num_points = num_points

    def forward(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None, mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        raise ValueError(f"CLIP2SAMTrainer supports mode 'loss' only (evaluate with forge-test), got {mode!r}")

    def loss(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> dict[str, Tensor]:
        size = self.model.input_size
        images = pad_to(inputs.float(), size)
        feats, emb, fpn = self.model.features(images)
        logits, labels, low, gts, rois = [], [], [], [], []
        for i, s in enumerate(data_samples):
            if s.gt is None or len(s.gt.labels) == 0:
                continue
            if s.gt.masks is None:  # image-level label: the whole image's box, classification only
                h, w = s.meta.img_shape
                box = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=images.device)
                rois.append(torch.cat([box.new_full((1, 1), i), box], 1))
                labels.append(s.gt.labels[:1].to(images.device))
                continue
            masks = s.gt.masks.bool()
            mh, mw = masks.shape[-2:]
            if mh > size or mw > size:
                raise ValueError(f"image {s.meta.image_id} ({s.meta.file_name}): masks {mh}x{mw} exceed the "
                                 f"model input {size}; resize the longest side to {size} in the pipeline")
            p = training_prompts(masks, self.num_prompts)
            boxes = s.gt.boxes[p.index].to(images.device).float()
            pts = p.points.to(images.device)
            parts = []
            if p.is_box.any():
                parts.append(self.model.decode(emb[i:i + 1], boxes=boxes[p.is_box]))
            if (~p.is_box).any():
                parts.append(self.model.decode(emb[i:i + 1], points=pts[~p.is_box]))
            low.append(torch.cat(parts))
            order = torch.cat([torch.nonzero(p.is_box).flatten(), torch.nonzero(~p.is_box).flatten()])
            gts.append(F.pad(masks[p.index[order]], (0, size - mw, 0, size - mh))[:, None].float())
            rois.append(torch.cat([boxes.new_full((len(order), 1), i), boxes[order]], 1))
            labels.append(s.gt.labels[p.index[order]].to(images.device))
        if not rois:
            return {"loss_empty": sum(q.sum() * 0 for q in self.parameters() if q.requires_grad)}
        rois_t = torch.cat(rois)
        logits = self.model.head_logits(fpn, rois_t[:, 1:], self.classifier, rois_t[:, 0])
        out = {"loss_cls": classification_loss(logits, torch.cat(labels))}
        if low:
            low_t, gt_t = torch.cat(low), torch.cat(gts)
            coords = uncertain_points(low_t, self.num_points)
            out.update(mask_losses(low_t, gt_t, coords))
        else:  # only image-level samples in the batch: zero mask losses that still touch the decoder
            zero = sum(q.sum() * 0 for q in self.model.mask_decoder.mask_decoder.parameters())
            out.update(loss_mask=zero, loss_dice=zero)
        return out
