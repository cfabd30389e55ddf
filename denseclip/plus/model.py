"""MaskCLIP+ (paper Sec. 3.3): a DeepLab segmenter trained on pseudo-labels of a frozen MaskCLIP, computed inside
the training step, then on its own predictions (self-training).

Labels come from the data: ``0..C-1`` = ground truth to train on, 255 = ignore, -1 = unlabelled
(:class:`forge.data.transforms.semseg.SuppressLabels`: every class in the annotation-free setting, the unseen ones
in the transductive zero-shot setting). In each training step the unlabelled pixels get, under ``no_grad``:

* before ``self_train_start`` (CLIP-guided): the argmax over the **unlabelled classes only** of the frozen
  MaskCLIP's cosine logits (features L2-normalised), refined by prompt denoising / key smoothing when their
  thresholds are set, upsampled bilinearly to the label size (official ``assign_label(clip=True)``);
* from ``self_train_start`` on: the argmax over the unlabelled classes of the student's own (detached, not
  normalised) decoder features against the text embeddings (``assign_label(norm=False)``).

The loss is cross-entropy (ignore 255) of the logits upsampled bilinearly to the label size, as mmseg's
``BaseDecodeHead.losses``. The step counter is a buffer, so a resumed run switches at the same iteration.
The official ``trust_clip_on`` merge (undefined in the released code) is not reproduced: when both sources are
active the self-training labels are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from denseclip.maskclip import MaskCLIP, cosine_logits
from denseclip.refine import refine
from forge.data.semseg.sample import IGNORE_INDEX

from .heads import ASPPv2, DeepLabV3PlusHead, DilatedResNet, TextClassifier

__all__ = ["MaskCLIPPlus", "assign_labels", "predict_at_original"]


def assign_labels(gt: Tensor, logits: Tensor, unlabeled: Tensor) -> Tensor:
    """Fill the ``-1`` pixels of ``gt (B, H, W)`` with ``unlabeled[argmax]`` of ``logits (B, |U|, h, w)`` (scores
    over the unlabelled classes only, upsampled bilinearly to ``(H, W)``); other pixels unchanged."""
    up = F.interpolate(logits.float(), size=gt.shape[-2:], mode="bilinear", align_corners=False)
    fill = unlabeled.to(gt.device)[up.argmax(dim=1)]
    return torch.where(gt < 0, fill, gt)


def predict_at_original(logits: Tensor, data_samples: Sequence) -> list[Tensor]:
    """``(B, C, H_pad, W_pad)`` logits at the padded input size -> per image ``(H0, W0)`` int64 class maps: the
    unpadded part (``meta.img_shape``) resized bilinearly to ``meta.ori_shape``, un-flipped, argmax."""
    out = []
    for i, s in enumerate(data_samples):
        h, w = s.meta.img_shape
        x = logits[i : i + 1, :, :h, :w]
        x = F.interpolate(x.float(), size=tuple(s.meta.ori_shape), mode="bilinear", align_corners=False)
        if s.meta.flip:
            x = x.flip(-1)
        out.append(x[0].argmax(0))
    return out


class MaskCLIPPlus(BaseModel):
    """DeepLab (v2 ASPP or v3+) on a dilated ResNet, classified by the frozen text embeddings of ``teacher``.

    Args:
        teacher: the frozen :class:`~denseclip.maskclip.MaskCLIP` (its ``text_embeddings`` ``(C, D)`` are the
            classifier; its KS/PD thresholds apply to the pseudo-labels).
        unlabeled_classes: classes whose pixels arrive as -1 and are pseudo-labelled (None: all ``C``).
        self_train_start: training step (1-based) from which self-training replaces CLIP guidance; None = never
            (the annotation-free rows).
        decoder: ``aspp`` (DeepLabv2) | ``deeplabv3plus``.
        backbone_layers: Bottleneck counts (ResNet-101 = (3, 4, 23, 3)); backbone_weights: torchvision weights name;
            width_scale: stage widths x this (1 = torchvision's; the CPU demo's student uses less).
        dilations: of the ASPP (v2: 6/12/18/24; v3+: 1/12/24/36).
        cls_bg: learnable background class in front of the text classes (the zero-shot Context-60 row).
        data_preprocessor: normalises the pixels for the student (ImageNet mean/std in the paper); the teacher
            gets the pixels back (``x * std + mean``) and applies its own normalisation.
    """

    def __init__(self, teacher: MaskCLIP, unlabeled_classes: Sequence[int] | None = None,
                 self_train_start: int | None = None, decoder: str = "aspp",
                 backbone_layers: Sequence[int] = (3, 4, 23, 3), backbone_weights: str | None = None,
                 width_scale: float = 1.0, dilations: Sequence[int] | None = None, cls_bg: bool = False,
                 dropout: float = 0.0,
                 data_preprocessor: dict | nn.Module | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        pre = self.data_preprocessor
        if getattr(pre, "mean", None) is None or getattr(pre, "std", None) is None:
            raise ValueError("MaskCLIPPlus needs a data_preprocessor with mean and std (forge ImagePreprocessor)")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        emb = teacher.text_embeddings
        num_text, dim = int(emb.shape[0]), int(emb.shape[1])
        self.backbone = DilatedResNet(backbone_layers, backbone_weights, width_scale)
        if decoder == "aspp":
            self.decoder = ASPPv2(self.backbone.out_channels, dim, dilations or (6, 12, 18, 24))
        elif decoder == "deeplabv3plus":
            self.decoder = DeepLabV3PlusHead(self.backbone.out_channels, dim, dilations or (1, 12, 24, 36),
                                             c1_in_channels=self.backbone.c1_channels)
        else:
            raise ValueError(f"decoder must be 'aspp' or 'deeplabv3plus', got {decoder!r}")
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = TextClassifier(emb, cls_bg=cls_bg)
        # labels: 0..C-1 = text classes, or with cls_bg 0 = background and 1..C the text classes (the dataset's
        # numbering with background, e.g. Context-60); unlabeled_classes are labels, never the background
        self.offset = 1 if cls_bg else 0
        classes = range(self.offset, num_text + self.offset) if unlabeled_classes is None else [
            int(c) for c in unlabeled_classes]
        bad = [c for c in classes if not self.offset <= c < num_text + self.offset]
        if bad:
            raise ValueError(f"unlabeled_classes {bad} are not text-class labels "
                             f"{self.offset}..{num_text + self.offset - 1}")
        self.register_buffer("unlabeled", torch.tensor(list(classes), dtype=torch.long), persistent=False)
        self.self_train_start = None if self_train_start is None else int(self_train_start)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> MaskCLIPPlus:
        super().train(mode)
        self.teacher.eval()  # always frozen, BN statistics included
        return self

    # ------------------------------------------------------------------------------------------------ network
    def features(self, x: Tensor) -> Tensor:
        """Normalised ``(B, 3, H, W)`` -> decoder features ``(B, D, H/8, W/8)`` (v3+: ``H/4``)."""
        return self.decoder(*self.backbone(x))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.features(x)
        return self.classifier(self.dropout(feat)), feat

    def pixels(self, x: Tensor) -> Tensor:
        """Undo the preprocessor's normalisation (the teacher normalises on its own)."""
        return x * self.data_preprocessor.std + self.data_preprocessor.mean

    @torch.no_grad()
    def teacher_logits(self, x: Tensor, classes: Tensor) -> Tensor:
        """MaskCLIP's refined cosine logits over ``classes`` at its feature resolution ``(B, |U|, h, w)``."""
        t = self.teacher
        feats, keys = t.dense_features(t.normalize(self.pixels(x)))
        logits = cosine_logits(feats.float(), t.text_embeddings[classes])
        return refine(logits, keys.float(), t.key_smoothing, t.prompt_denoising, t.key_norm)

    def pseudo_labels(self, x: Tensor, feat: Tensor, gt: Tensor) -> Tensor:
        """Labels of the current step: ``gt`` with its -1 pixels assigned (module docstring)."""
        if not bool((gt < 0).any()):
            return gt
        with torch.no_grad():
            self_training = self.self_train_start is not None and int(self.step) >= self.self_train_start
            if self_training:
                emb = self.classifier.embeddings()[self.unlabeled].float()
                logits = torch.einsum("bdhw,cd->bchw", feat.detach().float(), emb)
            else:
                logits = self.teacher_logits(x, self.unlabeled - self.offset)
            labels = assign_labels(gt, logits, self.unlabeled)
        return torch.where(labels < 0, torch.full_like(labels, IGNORE_INDEX), labels)

    # ------------------------------------------------------------------------------------------------ modes
    def forward(self, inputs: Tensor, data_samples: Sequence | None = None, mode: str = "tensor"):
        if mode == "tensor":
            return self._forward(inputs)[0]
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"mode must be tensor, loss or predict, got {mode!r}")

    def loss(self, inputs: Tensor, data_samples: Sequence) -> dict[str, Tensor]:
        if data_samples is None or any(s.gt_sem_seg is None for s in data_samples):
            raise ValueError("MaskCLIPPlus.loss needs data_samples with gt_sem_seg (-1 = to be pseudo-labelled)")
        self.step += 1
        gt = torch.stack([s.gt_sem_seg for s in data_samples]).to(inputs.device).long()
        logits, feat = self._forward(inputs)
        labels = self.pseudo_labels(inputs, feat, gt)
        up = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return {"loss_ce": F.cross_entropy(up, labels, ignore_index=IGNORE_INDEX)}

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Sequence) -> list[dict]:
        logits = self._forward(inputs)[0]
        logits = F.interpolate(logits.float(), size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        preds = predict_at_original(logits, data_samples)
        return [dict(pred_sem_seg=p, gt_sem_seg=s.ori_gt_sem_seg, img_path=s.meta.file_name)
                for p, s in zip(preds, data_samples)]
