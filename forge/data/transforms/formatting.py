"""Pipeline output -> dataset item, and the pointer for configs that still normalise in the pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from forge.data.structures import DetSample, ImageMeta

from .base import Sample, check_image

__all__ = ["Normalize", "pack_sample"]


def pack_sample(sample: Sample) -> dict:
    """Pipeline output (``img`` (H, W, C) ndarray, ``gt``, ``meta``, optional ``extra_boxes``) -> dataset item
    ``dict(inputs=Tensor(C, H, W), data_samples=DetSample)``.

    ``inputs`` keeps the pixel values and dtype of the image: uint8, or float32 when the pipeline produced float
    pixel values (photometric distortion, a ``keep_float`` resize). It is never normalised: that is the model's
    data preprocessor's job (:class:`forge.models.ImagePreprocessor`).
    """
    img = sample["img"]
    check_image(img, "pack_sample")
    h, w = img.shape[:2]
    inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    meta: ImageMeta = sample["meta"]
    meta.img_shape = (h, w)
    meta.pad_shape = (h, w)
    for name, boxes in (sample.get("extra_boxes") or {}).items():
        meta.extra[name] = boxes
    return dict(inputs=inputs, data_samples=DetSample(meta=meta, gt=sample["gt"]))


class Normalize:
    """Not a transform any more: the model owns its input normalisation.

    Constructing it raises, naming where mean, std and channel order go now, so that a config (or a run's saved
    ``config.yaml``) written before the change fails at once instead of normalising twice.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        raise TypeError(
            f"forge.data.transforms.Normalize({given}): pipelines no longer normalise (datasets yield uint8 pixel "
            "values). Remove the step and set the values on the model instead: model.data_preprocessor: "
            "{_target_: forge.models.ImagePreprocessor, mean: [...], std: [...], rgb_to_bgr: false} "
            "(docs/data.md, 'Who owns what')"
        )
