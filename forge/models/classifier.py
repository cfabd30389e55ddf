"""An mmengine model wrapping any ``nn.Module`` that maps images to class logits."""

from __future__ import annotations

from mmengine.model import BaseModel
from torch import Tensor, nn

from .preprocessor import ClsDataPreprocessor


class ImageClassifier(BaseModel):
    """``forward(inputs, data_samples, mode)`` for an image classifier.

    Args:
        backbone: ``(B, C, H, W) -> (B, num_classes)`` logits.
        loss: ``(logits, target) -> scalar``; target is ``(B,)`` labels or ``(B, num_classes)`` soft targets.
        data_preprocessor: the input normalisation and batch augmentation (:class:`ClsDataPreprocessor`; the
            datasets yield pixel values). Default: no normalisation, no augmentation.

    ``predict`` returns one dict per image: ``scores`` (softmax, ``(num_classes,)``), ``pred_label`` and, when
    labels are given, ``gt_label``.
    """

    def __init__(self, backbone: nn.Module, loss: nn.Module, data_preprocessor: nn.Module | None = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = ClsDataPreprocessor()
        super().__init__(data_preprocessor=data_preprocessor)
        self.backbone = backbone
        self.loss_fn = loss

    def forward(self, inputs: Tensor, data_samples: dict | None = None, mode: str = "tensor"):
        logits = self.backbone(inputs)
        if mode == "tensor":
            return logits
        if mode == "loss":
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples with 'label'")
            target = data_samples.get("target", data_samples["label"])
            return dict(loss_cls=self.loss_fn(logits, target))
        if mode == "predict":
            scores = logits.float().softmax(dim=-1)
            labels = None if data_samples is None else data_samples.get("label")
            out = []
            for i in range(scores.shape[0]):
                record = dict(scores=scores[i].cpu(), pred_label=int(scores[i].argmax()))
                if labels is not None:
                    record["gt_label"] = int(labels[i])
                out.append(record)
            return out
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
