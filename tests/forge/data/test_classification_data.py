"""The digits and folder classification datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from forge.data.digits import DigitsDataset, digits_split
from forge.data.folder import ImageFolderDataset


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = digits_split(), digits_split()
    assert np.array_equal(a["train"], b["train"]) and np.array_equal(a["val"], b["val"])
    assert not set(a["train"]) & set(a["val"])
    assert len(a["train"]) + len(a["val"]) == 1797
    val = DigitsDataset("val")
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174..183 per class)


def test_digits_items_and_shift():
    ds = DigitsDataset("train", img_size=16, channels=3, max_shift=0)
    item = ds[0]
    x = item["inputs"]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 255.0
    # pixel values: the model's (x - 127.5) / 127.5 gives the [-1, 1] images of the 0..16 digits upsampled
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().images[digits_split()["train"][0]]).float()[None, None] / 16.0
    ref = torch.nn.functional.interpolate(raw, size=(16, 16), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close((x - 127.5) / 127.5, ((ref - 0.5) / 0.5).expand(3, -1, -1), atol=1e-6, rtol=0)
    assert isinstance(item["data_samples"]["label"], int)
    shifted = DigitsDataset("train", img_size=16, max_shift=2)
    torch.manual_seed(0)
    moved = [not torch.equal(shifted[0]["inputs"], DigitsDataset("train", img_size=16)[0]["inputs"]) for _ in range(5)]
    assert any(moved)
    with pytest.raises(ValueError, match="split must be one of"):
        DigitsDataset("test")


def _folder(root, classes, per_class=2):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")


def test_folder_dataset_labels_follow_the_training_classes(tmp_path):
    _folder(tmp_path / "train", ["ant", "bee", "cat"])
    _folder(tmp_path / "val", ["ant", "cat"])  # 'bee' missing in val must not shift 'cat'
    val = ImageFolderDataset(str(tmp_path / "val"), class_root=str(tmp_path / "train"))
    assert val.classes == ["ant", "bee", "cat"]
    assert sorted({label for _, label in val.samples}) == [0, 2]
    item = val[0]
    assert item["inputs"].shape == (3, 8, 8) and item["inputs"].dtype == torch.uint8  # pixel values, as on disk
    assert torch.equal(item["inputs"], torch.from_numpy(np.array(Image.open(val.samples[0][0]))).permute(2, 0, 1))
    as_array = ImageFolderDataset(str(tmp_path / "val"), class_root=str(tmp_path / "train"),
                                  transform=lambda im: np.array(im).transpose(2, 0, 1))
    assert torch.equal(as_array[0]["inputs"], item["inputs"])
    with pytest.raises(TypeError, match="must return a .C, H, W. tensor"):
        ImageFolderDataset(str(tmp_path / "val"), transform=lambda im: im)[0]


def test_folder_dataset_errors_name_the_file(tmp_path):
    _folder(tmp_path / "train", ["a"])
    (tmp_path / "train" / "a" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt.*is not an image"):
        ImageFolderDataset(str(tmp_path / "train"))
    (tmp_path / "train" / "a" / "notes.txt").unlink()
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"not a png")
    ds = ImageFolderDataset(str(tmp_path / "train"))
    with pytest.raises(OSError, match="broken.png"):
        ds[[p for p, _ in ds.samples].index(str(tmp_path / "train" / "a" / "broken.png"))]
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        ImageFolderDataset(str(tmp_path / "nope"))
    _folder(tmp_path / "other", ["zzz"])
    with pytest.raises(ValueError, match="not in `classes`"):
        ImageFolderDataset(str(tmp_path / "other"), classes=["a"])
