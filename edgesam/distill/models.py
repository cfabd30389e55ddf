"""EdgeSAM's training as mmengine models for the shared runner (``forge-train experiment=edgesam/...``).

* :class:`SamPromptTrainer`: a SAM trained on ground-truth masks with box / point prompts and refinement clicks
  (how the CPU demo gets a teacher that knows something; SAM's own data engine is out of scope).
* :class:`EncoderDistiller` (phase 1): the student encoder regresses the teacher's image embeddings (pixel MSE,
  padding excluded); the student's prompt encoder and decoder are frozen copies of the teacher's, so the student is a
  complete SAM after phase 1 and is validated by prompting it.
* :class:`PromptDistiller` (phase 2, prompt-in-the-loop): student encoder + decoder trainable, prompt encoder frozen;
  box or point prompts (1/2 each per batch) for up to 16 instances per image, decoded by student and teacher; after
  each decode but the last, new points from their disagreement (:mod:`edgesam.point_sampler`) are appended and both
  decode again; BCE x5 + Dice x5 against the teacher's binarised low-res masks, per iteration / the iterations.

The teacher (:class:`~edgesam.distill.teacher.Teacher`) is held outside the module tree: it is not in the
checkpoints, the optimiser or DDP, and stays in eval mode; ``.to()`` moves it with the model. Validation (``predict``)
prompts every GT instance with its box and returns, per image, ``pred_masks`` / ``gt_masks`` (and the teacher's
``teacher_masks``) in the network-input frame for :class:`forge.evaluation.prompt.PromptSegMetric` and
:class:`edgesam.distill.metric.TeacherAgreementMetric`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from edgesam.distill.builders import load_weights
from edgesam.distill.prompting import PromptBatch, decode, sample_prompts
from edgesam.distill.teacher import Teacher, pad_to
from edgesam.losses import EmbeddingLoss, PromptLoss, binarise
from edgesam.point_sampler import append_points, disagreement_points
from edgesam.sam import PIXEL_MEAN, PIXEL_STD, Sam
from forge.data.structures import DetSample
from forge.models import ImagePreprocessor
from forge.precision import float32_region

__all__ = ["SamPromptTrainer", "EncoderDistiller", "PromptDistiller"]


class _SamModel(BaseModel):
    """Shared input handling: SAM's normalisation (the data preprocessor), padding to the square input, validity."""

    def __init__(self, data_preprocessor: dict | nn.Module | None, prompt_types: Sequence[str], max_per_image: int,
                 decode_iters: int, points_per_iter: int) -> None:
        if data_preprocessor is None:
            data_preprocessor = ImagePreprocessor(mean=list(PIXEL_MEAN), std=list(PIXEL_STD))
        super().__init__(data_preprocessor=data_preprocessor)
        bad = [t for t in prompt_types if t not in ("box", "point")]
        if not prompt_types or bad:
            raise ValueError(f"prompt_types must be a non-empty subset of ['box', 'point'], got {list(prompt_types)}")
        if decode_iters < 1 or points_per_iter < 1:
            raise ValueError(f"decode_iters and points_per_iter must be >= 1, got {decode_iters}, {points_per_iter}")
        self.prompt_types = list(prompt_types)
        self.max_per_image = int(max_per_image)
        self.decode_iters = int(decode_iters)
        self.points_per_iter = int(points_per_iter)

    @property
    def img_size(self) -> int:
        raise NotImplementedError

    def _prepare(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> tuple[Tensor, Tensor]:
        """Padded ``(B, 3, S, S)`` input and its ``(B, 1, S, S)`` validity (1 inside each image)."""
        size = self.img_size
        images = pad_to(inputs.float(), size)
        valid = images.new_zeros(images.shape[0], 1, size, size)
        for i, s in enumerate(data_samples):
            h, w = s.meta.img_shape
            valid[i, :, :h, :w] = 1
        return images, valid

    def _kind(self) -> str:
        """Box or point for this batch, 1/2 each when both are enabled (the global RNG, seeded by the runner)."""
        if len(self.prompt_types) == 1:
            return self.prompt_types[0]
        return self.prompt_types[int(torch.rand(()) < 0.5)]

    @torch.no_grad()
    def _box_masks(self, sam: Sam, emb: Tensor, data_samples: Sequence[DetSample]) -> tuple[PromptBatch | None,
                                                                                             list[Tensor]]:
        """Every GT instance prompted with its box (single-mask token), masks per image in the input frame."""
        prompts = sample_prompts(data_samples, self.img_size, "box", max_per_image=0)
        out = []
        for i, s in enumerate(data_samples):
            h, w = s.meta.img_shape
            sel = _select(prompts, i)
            if sel.numel() == 0:
                out.append(torch.zeros((0, h, w), dtype=torch.bool, device=emb.device))
                continue
            logits, _ = decode(sam, emb[i:i + 1], None, prompts.boxes[sel], 1)
            out.append(sam.postprocess_masks(logits, (h, w), (h, w))[:, 0] > sam.mask_threshold)
        return prompts, out

    def _records(self, prompts: PromptBatch | None, data_samples: Sequence[DetSample],
                 **masks: list[Tensor]) -> list[dict]:
        records = []
        for i, s in enumerate(data_samples):
            h, w = s.meta.img_shape
            sel = _select(prompts, i)
            gt = prompts.gt_masks[sel, :h, :w] if prompts is not None else torch.zeros((0, h, w), dtype=torch.bool)
            keep = s.gt.masks.flatten(1).any(1) & (~s.gt.iscrowd.bool() if s.gt.iscrowd is not None else True)
            rec = dict(gt_masks=gt.cpu(), gt_labels=s.gt.labels[keep].cpu(), image_id=s.meta.image_id)
            rec.update({k: v[i].cpu() for k, v in masks.items()})
            records.append(rec)
        return records

    def forward(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None, mode: str = "tensor"):
        if data_samples is None and mode != "tensor":
            raise ValueError(f"mode={mode!r} needs data_samples (the GT instances give the prompts)")
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.encode(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")


def _select(prompts: PromptBatch | None, image: int) -> Tensor:
    """Indices of the prompts of image ``image``."""
    if prompts is None:
        return torch.empty(0, dtype=torch.long)
    return (prompts.image_index == image).nonzero().flatten()


def _refine_target(target: Tensor) -> Tensor:
    """A binary target as ``(P, 1, H, W)`` logits for the disagreement sampler (+1 inside, -1 outside)."""
    return target.float() * 2 - 1


class SamPromptTrainer(_SamModel):
    """Train a SAM on GT masks: per batch box or point prompts (1/2 each), ``decode_iters`` decodes with a
    refinement click from the error region between decodes; loss ``PromptLoss`` on the single-mask output bilinearly
    upsampled to the input size, against the GT mask (padding excluded).

    Args:
        sam: the model to train (its ``image_encoder.img_size`` is the input size).
        loss: a :class:`PromptLoss` (default BCE x5 + Dice x5).
        checkpoint: initial weights (optional).
    """

    def __init__(self, sam: Sam, loss: PromptLoss | None = None, prompt_types: Sequence[str] = ("box", "point"),
                 max_per_image: int = 16, decode_iters: int = 2, points_per_iter: int = 1,
                 checkpoint: str | None = None, data_preprocessor: dict | nn.Module | None = None) -> None:
        super().__init__(data_preprocessor, prompt_types, max_per_image, decode_iters, points_per_iter)
        self.sam = sam
        if checkpoint:
            load_weights(self.sam, checkpoint)
        self.prompt_loss = loss if loss is not None else PromptLoss()

    @property
    def img_size(self) -> int:
        return self.sam.img_size

    def encode(self, inputs: Tensor) -> Tensor:
        return self.sam.image_encoder(pad_to(inputs.float(), self.img_size))

    def loss(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> dict[str, Tensor]:
        images, valid = self._prepare(inputs, data_samples)
        emb = self.sam.image_encoder(images)
        prompts = sample_prompts(data_samples, self.img_size, self._kind(), self.max_per_image)
        if prompts is None:  # no instance in the batch: a zero loss that still touches every trainable weight
            return {"loss_empty": sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)}
        emb_p, valid_p = emb[prompts.image_index], valid[prompts.image_index]
        target = prompts.gt_masks[:, None].float()
        points, size = prompts.points, (self.img_size, self.img_size)
        losses: dict[str, Tensor] = {}
        logits = target  # replaced by the first decode; refinement starts from the second
        for it in range(self.decode_iters):
            if it > 0:
                new = disagreement_points(logits.detach(), _refine_target(target), None, valid_p, size,
                                          self.points_per_iter)
                points = append_points(points, new)
            low, _ = decode(self.sam, emb_p, points, prompts.boxes, 1)
            with float32_region(images.device.type):
                logits = torch.nn.functional.interpolate(low.float(), size, mode="bilinear", align_corners=False)
                losses.update(self.prompt_loss(logits, target, valid_p, it, self.decode_iters))
        return losses

    def predict(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> list[dict]:
        images, _ = self._prepare(inputs, data_samples)
        prompts, masks = self._box_masks(self.sam, self.sam.image_encoder(images), data_samples)
        return self._records(prompts, data_samples, pred_masks=masks)


class _Distiller(_SamModel):
    """Student = ``student_encoder`` + copies of the teacher's prompt encoder and mask decoder."""

    def __init__(self, student_encoder: nn.Module, teacher: Teacher, data_preprocessor, prompt_types, max_per_image,
                 decode_iters, points_per_iter, student_checkpoint: str | None, student_keys: Sequence[str]) -> None:
        super().__init__(data_preprocessor, prompt_types, max_per_image, decode_iters, points_per_iter)
        if not isinstance(teacher, Teacher):
            raise TypeError(f"teacher must be an edgesam.distill.Teacher, got {type(teacher).__name__}")
        if int(student_encoder.img_size) != teacher.sam.img_size:
            raise ValueError(f"student input {student_encoder.img_size} != teacher input {teacher.sam.img_size}")
        t = teacher.sam
        self.student = Sam(student_encoder, copy.deepcopy(t.prompt_encoder), copy.deepcopy(t.mask_decoder),
                           t.pixel_mean.flatten().tolist(), t.pixel_std.flatten().tolist())
        self.student.requires_grad_(True)
        self.student.prompt_encoder.requires_grad_(False)  # frozen in both phases (official FREEZE_PROMPT_ENCODER)
        if student_checkpoint:
            load_weights(self.student, student_checkpoint, only=list(student_keys))
        object.__setattr__(self, "teacher", teacher)  # not a submodule: no checkpoint / optimiser / DDP entry

    def _apply(self, fn, recurse: bool = True):
        self.teacher._apply(fn, recurse)
        return super()._apply(fn, recurse)

    @property
    def img_size(self) -> int:
        return self.student.img_size

    def encode(self, inputs: Tensor) -> Tensor:
        return self.student.image_encoder(pad_to(inputs.float(), self.img_size))

    def predict(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> list[dict]:
        images, _ = self._prepare(inputs, data_samples)
        prompts, student = self._box_masks(self.student, self.student.image_encoder(images), data_samples)
        t_emb = self.teacher.embeddings(images, data_samples)
        _, teacher = self._box_masks(self.teacher.sam, t_emb, data_samples)
        return self._records(prompts, data_samples, pred_masks=student, teacher_masks=teacher)


class EncoderDistiller(_Distiller):
    """Phase 1: only the student's image encoder trains, on ``EmbeddingLoss`` to the teacher's embeddings.

    Args:
        student_encoder: e.g. :func:`edgesam.distill.builders.repvit_encoder`; output width = the teacher's.
        teacher: the frozen :class:`Teacher` (live or cached embeddings).
        loss: an :class:`EmbeddingLoss` (default weight 1).
        student_checkpoint: initial encoder weights (keys ``image_encoder.*``, optionally under ``student.``).
        encoder_init: a RepViT ImageNet classification checkpoint (``repvit_m1_distill_300.pth``, the official
            initialisation) for the encoder's backbone (:mod:`edgesam.repvit_cls`); not with ``student_checkpoint``.
    """

    def __init__(self, student_encoder: nn.Module, teacher: Teacher, loss: EmbeddingLoss | None = None,
                 student_checkpoint: str | None = None, encoder_init: str | None = None,
                 data_preprocessor: dict | nn.Module | None = None) -> None:
        if encoder_init and student_checkpoint:
            raise ValueError("EncoderDistiller: give encoder_init (a classification file) or student_checkpoint "
                             f"(a SAM-style file), not both: {encoder_init!r}, {student_checkpoint!r}")
        if encoder_init:
            from edgesam.repvit_cls import load_classification_init

            load_classification_init(student_encoder, encoder_init)
        super().__init__(student_encoder, teacher, data_preprocessor, ["box"], 0, 1, 1, student_checkpoint,
                         ["image_encoder."])
        self.student.mask_decoder.requires_grad_(False)
        self.embedding_loss = loss if loss is not None else EmbeddingLoss()

    def loss(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> dict[str, Tensor]:
        images, valid = self._prepare(inputs, data_samples)
        student = self.student.image_encoder(images)
        teacher = self.teacher.embeddings(images, data_samples)
        with float32_region(images.device.type):
            return self.embedding_loss(student.float(), teacher, valid)


class PromptDistiller(_Distiller):
    """Phase 2: prompt-in-the-loop distillation (see the module docstring).

    Args:
        student_encoder: the student's image encoder (architecture); its weights from ``student_checkpoint``.
        teacher: the frozen :class:`Teacher`.
        loss: a :class:`PromptLoss` (default BCE x5 + Dice x5, official).
        student_checkpoint: the phase-1 checkpoint (or any file with the student's keys).
        student_keys: what is taken from it: ``['image_encoder.']`` (official: the decoder starts from the teacher's)
            or ``['image_encoder.', 'mask_decoder.']``.
        prompt_types: ``['box', 'point']`` (1/2 each per batch), or one of them.
        max_per_image: instances prompted per image (16).
        decode_iters: decodes per prompt (2: one round of refinement points).
        points_per_iter: points added per refinement round (1).
        point_masks: mask outputs distilled for point prompts (4: every mask token, official; 3 or 1).
        box_masks: for box prompts (1, official).
        iter_on_box: refinement rounds for box prompts too (official ``ITER_ON_BOX: True``).
        train_decoder: the student's mask decoder trains (True, official).
    """

    def __init__(self, student_encoder: nn.Module, teacher: Teacher, loss: PromptLoss | None = None,
                 student_checkpoint: str | None = None, student_keys: Sequence[str] = ("image_encoder.",),
                 prompt_types: Sequence[str] = ("box", "point"), max_per_image: int = 16, decode_iters: int = 2,
                 points_per_iter: int = 1, point_masks: int = 4, box_masks: int = 1, iter_on_box: bool = True,
                 train_decoder: bool = True, data_preprocessor: dict | nn.Module | None = None) -> None:
        super().__init__(student_encoder, teacher, data_preprocessor, prompt_types, max_per_image, decode_iters,
                         points_per_iter, student_checkpoint, student_keys)
        for name, k in (("point_masks", point_masks), ("box_masks", box_masks)):
            if k not in (1, 3, 4):
                raise ValueError(f"{name} must be 1, 3 or 4, got {k}")
        self.point_masks, self.box_masks, self.iter_on_box = int(point_masks), int(box_masks), bool(iter_on_box)
        self.student.mask_decoder.requires_grad_(bool(train_decoder))
        self.prompt_loss = loss if loss is not None else PromptLoss()

    def loss(self, inputs: Tensor, data_samples: Sequence[DetSample]) -> dict[str, Tensor]:
        images, valid = self._prepare(inputs, data_samples)
        s_emb = self.student.image_encoder(images)
        kind = self._kind()
        prompts = sample_prompts(data_samples, self.img_size, kind, self.max_per_image)
        if prompts is None:
            return {"loss_empty": sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)}
        t_emb = self.teacher.embeddings(images, data_samples)[prompts.image_index]
        s_emb, valid_p = s_emb[prompts.image_index], valid[prompts.image_index]
        num_masks = self.point_masks if kind == "point" else self.box_masks
        iters = self.decode_iters if (kind == "point" or self.iter_on_box) else 1
        points, size = prompts.points, (self.img_size, self.img_size)
        losses: dict[str, Tensor] = {}
        s_logits = t_logits = t_iou = None  # set by the first decode; refinement starts from the second
        for it in range(iters):
            if it > 0:
                new = disagreement_points(s_logits.detach(), t_logits, t_iou, valid_p, size, self.points_per_iter,
                                          threshold=self.student.mask_threshold)
                points = append_points(points, new)
            s_logits, _ = decode(self.student, s_emb, points, prompts.boxes, num_masks)
            with torch.no_grad():
                t_logits, t_iou = decode(self.teacher.sam, t_emb, points, prompts.boxes, num_masks)
            with float32_region(images.device.type):
                weight = torch.nn.functional.interpolate(valid_p, s_logits.shape[-2:], mode="bilinear",
                                                         align_corners=False)
                target = binarise(t_logits, self.teacher.sam.mask_threshold)
                losses.update(self.prompt_loss(s_logits, target, weight, it, iters))
        return losses
