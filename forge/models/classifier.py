"""An mmengine model wrapping any ``nn.Module`` that maps images to class logits."""

from __future__ import annotations

from collections.abc import Callable

from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import Tensor, nn


class ClsDataPreprocessor(BaseDataPreprocessor):
    """Moves a classification batch to the device and applies an optional batch augmentation in training.

    The batch is ``dict(inputs=(B, C, H, W) float, data_samples=dict(label=(B,) int64))`` (what
    ``torch.utils.data.default_collate`` makes of the folder/digits datasets). ``batch_augment`` is a callable
    ``(inputs, labels) -> (inputs, soft_targets)`` such as ``timm.data.Mixup``.
    """

    def __init__(self, batch_augment: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None) -> None:
        super().__init__()
        self.batch_augment = batch_augment

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        if training and self.batch_augment is not None:
            inputs, target = self.batch_augment(data["inputs"], data["data_samples"]["label"])
            data = dict(inputs=inputs, data_samples=dict(data["data_samples"], target=target))
        return data


class ImageClassifier(BaseModel):
    """``forward(inputs, data_samples, mode)`` for an image classifier.

    Args:
        backbone: ``(B, C, H, W) -> (B, num_classes)`` logits.
        loss: ``(logits, target) -> scalar``; target is ``(B,)`` labels or ``(B, num_classes)`` soft targets.
        data_preprocessor: defaults to :class:`ClsDataPreprocessor` without batch augmentation.

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
