"""The model's data preprocessor: it owns the input normalisation (mean, std, channel order), as in mmengine and
detectron2.

Datasets yield images in **pixel space**: ``(C, H, W)`` uint8, RGB (float32 pixel values in ``[0, 255]`` where a
paper's pipeline keeps float precision, e.g. YOLACT's float resize and photometric distortion), never normalised.
The preprocessor of the model that will consume them turns a collated batch into the network input on the model's
device. The same module serves training, validation, ``forge-test``, ``forge-infer`` and ONNX export, so a
checkpoint is always fed with its own model's values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

__all__ = ["ClsDataPreprocessor", "ImagePreprocessor"]


def _per_channel(name: str, values: Sequence[float] | float | None) -> list[float] | None:
    if values is None:
        return None
    vals = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if not vals:
        raise ValueError(f"ImagePreprocessor: {name} must hold one value or one per channel, got {values!r}")
    return vals


def _buffer(values: list[float] | None) -> Tensor | None:
    # on the CPU even inside `with torch.device("meta")` (models built there adopt a checkpoint's tensors, which
    # never hold these values), then moved with the model
    return None if values is None else torch.tensor(values, dtype=torch.float32, device="cpu").view(1, -1, 1, 1)


class ImagePreprocessor(BaseDataPreprocessor):
    """Collated pixel-space batch -> normalised float32 network input.

    ``normalize(x)``: ``x.float()``, channels reversed when ``rgb_to_bgr``, then ``(x - mean) / std``. In
    :meth:`forward` the batch is first moved to the model's device (mmengine's ``cast_data``) and, for detection
    batches whose images were padded to a common size by the collate function, everything outside each image's
    ``meta.img_shape`` is set to ``pad_value`` **after** normalisation (``0`` = the mean colour, whatever value the
    collate padded the pixels with).

    Args:
        mean: per-channel mean in pixel units (0-255) in the channel order the network sees (after
            ``rgb_to_bgr``), or one value for every channel; None (with ``std`` None): no normalisation.
        std: per-channel standard deviation, same conventions; must be positive.
        rgb_to_bgr: reverse the channel order (datasets yield RGB) for backbones trained on BGR input.
        pad_value: value of the batch padding in the normalised input.
        non_blocking: asynchronous host-to-device copies (mmengine's option).
    """

    def __init__(
        self,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        rgb_to_bgr: bool = False,
        pad_value: float = 0.0,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(non_blocking=non_blocking)
        if (mean is None) != (std is None):
            raise ValueError(f"ImagePreprocessor: give both mean and std or neither, got mean={mean!r}, std={std!r}")
        mean_v, std_v = _per_channel("mean", mean), _per_channel("std", std)
        if std_v is not None and min(std_v) <= 0:
            raise ValueError(f"ImagePreprocessor: std must be positive, got {std!r}")
        if mean_v is not None and std_v is not None and 1 not in (len(mean_v), len(std_v)) and (
                len(mean_v) != len(std_v)):
            raise ValueError(f"ImagePreprocessor: mean {mean!r} and std {std!r} differ in length")
        # not persistent: the values come from the config, and checkpoints (official ones included) do not hold them
        self.register_buffer("mean", _buffer(mean_v), persistent=False)
        self.register_buffer("std", _buffer(std_v), persistent=False)
        self.rgb_to_bgr = bool(rgb_to_bgr)
        self.pad_value = float(pad_value)

    def normalize(self, inputs: Tensor) -> Tensor:
        """``(B, C, H, W)`` pixel values (any dtype) -> float32 network input (see the class docstring)."""
        if inputs.ndim != 4:
            raise ValueError(f"ImagePreprocessor: inputs must be (B, C, H, W), got {tuple(inputs.shape)}")
        x = inputs.float()
        if self.rgb_to_bgr:
            x = x.flip(1)
        if self.mean is not None:
            channels = max(self.mean.shape[1], self.std.shape[1])
            if channels not in (1, x.shape[1]):
                raise ValueError(f"ImagePreprocessor: {channels} mean/std values for {x.shape[1]}-channel images")
            x = (x - self.mean) / self.std
        return x

    def _fill_padding(self, x: Tensor, data_samples) -> Tensor:
        if not isinstance(data_samples, Sequence):
            return x
        h, w = x.shape[-2:]
        for i, sample in enumerate(data_samples):
            meta = getattr(sample, "meta", None)
            shape = getattr(meta, "img_shape", None)
            if not shape or shape[0] <= 0 or (shape[0] >= h and shape[1] >= w):
                continue
            x[i, :, shape[0]:, :] = self.pad_value
            x[i, :, :, shape[1]:] = self.pad_value
        return x

    def forward(self, data: dict, training: bool = False) -> dict:
        """``dict(inputs=(B, C, H, W) or [(C, H, W), ...] of one size, data_samples=...)`` -> the same dict with
        ``inputs`` normalised on the model's device."""
        data = self.cast_data(data)
        inputs = data["inputs"]
        if not isinstance(inputs, Tensor):
            inputs = torch.stack(list(inputs))
        x = self._fill_padding(self.normalize(inputs), data.get("data_samples"))
        return {**data, "inputs": x}

    def extra_repr(self) -> str:
        def values(t: Tensor | None):
            return None if t is None or t.is_meta else [round(v, 4) for v in t.flatten().tolist()]

        mean, std = values(self.mean), values(self.std)
        return f"mean={mean}, std={std}, rgb_to_bgr={self.rgb_to_bgr}, pad_value={self.pad_value}"


class ClsDataPreprocessor(ImagePreprocessor):
    """:class:`ImagePreprocessor` for classification batches, plus the batch augmentations of training.

    The batch is ``dict(inputs=(B, C, H, W), data_samples=dict(label=(B,) int64))`` (what
    ``torch.utils.data.default_collate`` makes of the folder/digits datasets). In training, after normalisation:
    ``random_erasing`` (a callable on the normalised ``(B, C, H, W)`` batch, e.g. ``timm.data.RandomErasing``; DeiT
    erases in normalised space) and then ``batch_augment`` (``(inputs, labels) -> (inputs, soft_targets)``, e.g.
    ``timm.data.Mixup``), the order of DeiT's recipe.
    """

    def __init__(
        self,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        rgb_to_bgr: bool = False,
        random_erasing: Callable[[Tensor], Tensor] | None = None,
        batch_augment: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        super().__init__(mean=mean, std=std, rgb_to_bgr=rgb_to_bgr)
        self.random_erasing = random_erasing
        self.batch_augment = batch_augment

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if not training:
            return data
        inputs = data["inputs"]
        if self.random_erasing is not None:
            if hasattr(self.random_erasing, "device"):  # timm draws its noise on this device
                self.random_erasing.device = inputs.device
            inputs = self.random_erasing(inputs)
        if self.batch_augment is not None:
            inputs, target = self.batch_augment(inputs, data["data_samples"]["label"])
            return dict(inputs=inputs, data_samples=dict(data["data_samples"], target=target))
        return {**data, "inputs": inputs}
