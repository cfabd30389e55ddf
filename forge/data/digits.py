"""scikit-learn's handwritten digits as an embedded, download-free image classification set.

1,797 real 8x8 grey images (values 0..16) of the digits 0-9. A fixed stratified split holds out ``test_fraction``
of each class (``split_seed`` fixes it for good, independent of the training seed). Images are scaled to pixel
values in [0, 255], upsampled bilinearly to ``img_size`` (float32, not rounded: 8x8 images have little to spare) and
repeated to ``channels`` channels; they are not normalised (the model's data preprocessor does it, e.g. mean 127.5,
std 127.5). Training samples can be randomly shifted by up to ``max_shift`` pixels (in the upsampled image), the one
augmentation that matters for such small data.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLITS = ("train", "val")


def digits_split(test_fraction: float = 0.2, split_seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of the fixed stratified train/val split of the 1,797 digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    train_idx, val_idx = train_test_split(
        np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=split_seed
    )
    return dict(train=np.sort(train_idx), val=np.sort(val_idx))


class DigitsDataset(Dataset):
    """Items are ``dict(inputs=(channels, img_size, img_size) float32 in [0, 255], data_samples=dict(label=int))``.

    Args:
        split: ``'train'`` or ``'val'``.
        img_size: side of the upsampled image.
        channels: number of channels (the grey image is repeated).
        max_shift: maximum random translation in pixels (training augmentation; 0 disables it).
        test_fraction, split_seed: the fixed held-out split.
    """

    def __init__(
        self,
        split: str = "train",
        img_size: int = 16,
        channels: int = 1,
        max_shift: int = 0,
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        from sklearn.datasets import load_digits

        if split not in SPLITS:
            raise ValueError(f"DigitsDataset split must be one of {SPLITS}, got {split!r}")
        digits = load_digits()
        idx = digits_split(test_fraction, split_seed)[split]
        images = torch.from_numpy(digits.images[idx]).float().div(16.0).unsqueeze(1)
        images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
        self.images = (images * 255.0).repeat(1, channels, 1, 1).contiguous()
        self.labels = torch.from_numpy(digits.target[idx]).long()
        self.max_shift = max_shift
        self.metainfo = dict(classes=[str(i) for i in range(10)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        img = self.images[i]
        if self.max_shift > 0:
            dx, dy = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
            # the background is 0: pixels shifted in from outside are background
            img = torch.roll(img, shifts=(dy, dx), dims=(1, 2))
            if dy > 0:
                img[:, :dy] = 0.0
            elif dy < 0:
                img[:, dy:] = 0.0
            if dx > 0:
                img[:, :, :dx] = 0.0
            elif dx < 0:
                img[:, :, dx:] = 0.0
        return dict(inputs=img, data_samples=dict(label=int(self.labels[i])))
