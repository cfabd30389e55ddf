"""Image-level samples from a class-named folder and the per-batch mixing ratio."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ovsam.data import ImageLabelDataset, MixedBatchSampler


def test_image_label_dataset(tmp_path):
    for name in ("Teddy_bear", "zebra"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(tmp_path / name / "a.png")
    vocab = [["dog"], ["zebra"], ["teddy bear", "teddy"]]
    ds = ImageLabelDataset(str(tmp_path), vocab, size=64)
    labels = sorted(int(ds[i]["data_samples"].gt.labels[0]) for i in range(len(ds)))
    assert labels == [1, 2]
    item = ds[0]
    assert item["inputs"].shape == (3, 32, 64)
    assert item["data_samples"].gt.masks is None
    assert item["data_samples"].gt.boxes.tolist() == [[0, 0, 64, 32]]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ImageLabelDataset(str(tmp_path), [["dog"]], size=64)


@pytest.mark.parametrize("ratio, counts", [(0.25, (6, 2)), (0.5, (4, 4)), (0.0, (8, 0))])
def test_mixing_ratio_per_batch(ratio, counts):
    s = MixedBatchSampler(n_seg=10, n_img=7, batch_size=8, ratio=ratio, num_batches=20, seed=1)
    batches = list(s)
    assert len(batches) == 20
    for b in batches:
        assert (sum(i < 10 for i in b), sum(i >= 10 for i in b)) == counts
        assert all(0 <= i < 17 for i in b)
    # every segmentation image is used before one repeats (per-part permutations)
    seg = [i for b in batches for i in b if i < 10]
    assert sorted(seg[:10]) == list(range(10))
    with pytest.raises(ValueError, match="image-level"):
        MixedBatchSampler(10, 0, 8, 0.5)
