"""ImageNet-style folder dataset: ``root/<class>/<image>``.

Classes are the sorted sub-folder names; images are files with a known image extension (others are an error, not
silently skipped). A ``transform`` maps a PIL RGB image to a ``(C, H, W)`` tensor or array of pixel values (e.g.
``timm.data.create_transform(..., normalize=False)``, which gives uint8); normalisation is the model's data
preprocessor's job.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderDataset(Dataset):
    """Items are ``dict(inputs=transform(image), data_samples=dict(label=int))``.

    Args:
        root: folder with one sub-folder per class.
        transform: callable on a PIL image returning a ``(C, H, W)`` tensor or ndarray; default: the image as a
            ``(3, H, W)`` uint8 tensor.
        classes: optional explicit class list.
        class_root: take the classes from this folder's sub-folders instead (the validation split uses the
            training folder, so that a class missing from one split cannot shift the labels of the other).
    """

    def __init__(
        self,
        root: str,
        transform: Callable | None = None,
        classes: list[str] | None = None,
        class_root: str | None = None,
    ) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolderDataset: root {root!r} is not a directory")
        found = sorted(d.name for d in os.scandir(root) if d.is_dir())
        if not found:
            raise ValueError(f"ImageFolderDataset: no class folders in {root!r}")
        if classes is None and class_root is not None:
            if not os.path.isdir(class_root):
                raise FileNotFoundError(f"ImageFolderDataset: class_root {class_root!r} is not a directory")
            classes = sorted(d.name for d in os.scandir(class_root) if d.is_dir())
        self.classes = list(classes) if classes is not None else found
        unknown = set(found) - set(self.classes)
        if unknown:
            raise ValueError(f"ImageFolderDataset: folders {sorted(unknown)} in {root!r} are not in `classes`")
        self.root = root
        self.transform = transform
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(root, name)
            if not os.path.isdir(folder):
                continue
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if not entry.is_file():
                    continue
                if not entry.name.lower().endswith(IMG_EXTENSIONS):
                    raise ValueError(f"ImageFolderDataset: {entry.path!r} is not an image ({IMG_EXTENSIONS})")
                self.samples.append((entry.path, label))
        if not self.samples:
            raise ValueError(f"ImageFolderDataset: no images under {root!r}")
        self.metainfo = dict(classes=self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise OSError(f"ImageFolderDataset: cannot read image {path!r}: {err}") from err
        if self.transform is None:
            x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        else:
            x = self.transform(image)
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(np.ascontiguousarray(x))
            if not isinstance(x, torch.Tensor) or x.ndim != 3:
                raise TypeError(f"ImageFolderDataset: the transform must return a (C, H, W) tensor or array for "
                                f"{path!r}, got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        return dict(inputs=x, data_samples=dict(label=label))
