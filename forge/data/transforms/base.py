"""The sample dict, the random helpers every transform shares, and :class:`Compose`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from forge.data.structures import Instances

Sample = dict[str, Any]

__all__ = ["Compose", "Sample"]


def rand() -> float:
    return float(np.random.random_sample())


def coin(prob: float) -> bool:
    return prob > 0 and rand() < prob


def uniform(low: float, high: float) -> float:
    return float(np.random.uniform(low, high))


def map_boxes(sample: Sample, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Apply ``fn`` to ``gt.boxes`` and every ``extra_boxes`` entry (in place on the sample dict)."""
    gt: Instances = sample["gt"]
    sample["gt"] = replace(gt, boxes=fn(gt.boxes))
    extra = sample.get("extra_boxes")
    if extra:
        sample["extra_boxes"] = {k: fn(v) for k, v in extra.items()}


def select(sample: Sample, keep: torch.Tensor) -> None:
    """Keep the instances where ``keep`` (bool ``(N,)``) is true, in ``gt`` and ``extra_boxes``."""
    sample["gt"] = sample["gt"][keep]
    extra = sample.get("extra_boxes")
    if extra:
        sample["extra_boxes"] = {k: v[keep] for k, v in extra.items()}


def set_masks(sample: Sample, masks: torch.Tensor | None) -> None:
    sample["gt"] = replace(sample["gt"], masks=masks)


def float_image(img: np.ndarray) -> np.ndarray:
    return img if img.dtype == np.float32 else img.astype(np.float32)


def check_image(img: np.ndarray, where: str) -> None:
    """Images travel as ``(H, W, C)`` uint8 or float32 pixel values; anything else is a pipeline bug."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.dtype not in (np.uint8, np.float32):
        desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise TypeError(f"{where}: sample['img'] must be an (H, W, C) uint8 or float32 ndarray, got {desc}")


class Compose:
    """Apply transforms in order; ``None`` entries are skipped (handy for switching a step off in a config)."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample] | None]) -> None:
        self.transforms = [t for t in (transforms or []) if t is not None]
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable (did the config miss a _target_?)")

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"
