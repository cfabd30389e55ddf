"""Joint-training data: an ImageNet-21k-style folder of class-named images as image-level samples, and a batch
sampler that mixes them with segmentation images by a configured ratio.

Image-level samples are :class:`forge.data.structures.DetSample` with one instance — the whole (resized) image's
box, the folder's class — and ``gt.masks = None``, which :class:`ovsam.train.CLIP2SAMTrainer` uses for the
classification loss only. Folder names map to a vocabulary (e.g. the merged V3Det / LVIS / ImageNet-21k list) by
:func:`ovsam.vocab.normalise` over every synonym.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from edgesam.transforms import ResizeLongestSide
from forge.data.folder import ImageFolderDataset
from forge.data.structures import DetSample, ImageMeta, Instances

from .losses import mixed_batch_counts
from .vocab import merge_vocabularies, normalise, read_vocabulary


class ImageLabelDataset(Dataset):
    """``root/<class name>/<image>`` -> ``dict(inputs=(3, h, w) uint8, data_samples=DetSample)``, longest side
    resized to ``size``.

    Args:
        root: folder of class folders.
        vocabulary: classes (synonym lists) whose index is the label; every folder must name one of them.
        size: model input side (1024).
    """

    def __init__(self, root: str, vocabulary: Sequence[Sequence[str]], size: int = 1024) -> None:
        self.resize = ResizeLongestSide(size)
        self.folder = ImageFolderDataset(root, transform=lambda im: np.array(im))  # writable copy
        index = {normalise(n): k for k, c in enumerate(vocabulary) for n in c}
        unknown = [c for c in self.folder.classes if normalise(c) not in index]
        if unknown:
            raise ValueError(f"ImageLabelDataset: class folders of {root!r} not in the vocabulary: {unknown[:5]}")
        self.label_of = [index[normalise(c)] for c in self.folder.classes]

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> dict:
        item = self.folder[i]
        image = np.asarray(item["inputs"])
        h0, w0 = image.shape[:2]
        image = self.resize.apply_image(image)
        h, w = image.shape[:2]
        gt = Instances(boxes=torch.tensor([[0.0, 0.0, float(w), float(h)]]),
                       labels=torch.tensor([self.label_of[int(item["data_samples"]["label"])]]))
        meta = ImageMeta(image_id=i, file_name=self.folder.samples[i][0], ori_shape=(h0, w0), img_shape=(h, w))
        return {"inputs": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                "data_samples": DetSample(meta=meta, gt=gt)}


class MixedBatchSampler(Sampler[list[int]]):
    """Batches over ``ConcatDataset([segmentation, image_level])``: each holds
    :func:`~ovsam.losses.mixed_batch_counts` ``(batch_size, ratio)`` items of each part, drawn from per-part
    permutations (reshuffled when used up), seeded.

    Args:
        n_seg, n_img: sizes of the two parts (image-level indices start at ``n_seg``).
        num_batches: batches per epoch (default: enough to see the segmentation part once).
    """

    def __init__(self, n_seg: int, n_img: int, batch_size: int, ratio: float, num_batches: int | None = None,
                 seed: int = 0) -> None:
        self.counts = mixed_batch_counts(batch_size, ratio)
        for n, c, what in ((n_seg, self.counts[0], "segmentation"), (n_img, self.counts[1], "image-level")):
            if c and n == 0:
                raise ValueError(f"MixedBatchSampler: ratio {ratio} needs {what} items, but that part is empty")
        self.n = (n_seg, n_img)
        self.num_batches = num_batches or max(1, -(-n_seg // max(self.counts[0], 1)))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        pools: list[list[int]] = [[], []]

        def take(part: int, k: int) -> list[int]:
            out = []
            while len(out) < k:
                if not pools[part]:
                    pools[part] = torch.randperm(self.n[part], generator=g).tolist()
                out.append(pools[part].pop())
            return [i + (self.n[0] if part else 0) for i in out]

        for _ in range(self.num_batches):
            yield take(0, self.counts[0]) + take(1, self.counts[1])


def mixed_batch_sampler(dataset: ConcatDataset, batch_size: int, seed: int, ratio: float,
                        num_batches: int | None = None) -> MixedBatchSampler:
    """:class:`MixedBatchSampler` over ``ConcatDataset([segmentation, image_level])`` for the shared runner's
    ``dataset.train_batch_sampler`` (called with the dataset, the per-process batch size and the run's seed).
    Each process draws its own batches (seed + rank), as per-rank samplers do."""
    from forge.distributed import get_rank

    sizes = getattr(dataset, "datasets", None)
    if sizes is None or len(sizes) != 2:
        raise ValueError("mixed_batch_sampler: the training set must be ConcatDataset([segmentation, image_level]), "
                         f"got {type(dataset).__name__}")
    return MixedBatchSampler(len(sizes[0]), len(sizes[1]), batch_size, ratio, num_batches,
                             seed=int(seed) + 7919 * get_rank())


def joint_vocabulary(first: Sequence[Sequence[str]], others: Sequence[Sequence[Sequence[str]]] = (),
                     files: Sequence[str] = ()) -> list[list[str]]:
    """:func:`~ovsam.vocab.merge_vocabularies` of the segmentation data's classes (``first``) and other lists
    (V3Det, ImageNet-21k, ...: ``others``, then the vocabulary ``files`` read by
    :func:`~ovsam.vocab.read_vocabulary`), checked to keep ``first``'s classes at their label indices ``0..K-1``
    (so the segmentation labels index the merged classifier unchanged); two of its classes merging is an error."""
    merged = merge_vocabularies([first, *others, *(read_vocabulary(str(f)) for f in files)])
    keys = [normalise(c[0]) for c in first]
    moved = [c[0] for k, c in zip(keys, merged) if normalise(c[0]) != k]
    if len(merged) < len(first) or moved:
        raise ValueError(f"joint_vocabulary: the segmentation classes do not keep their indices after merging "
                         f"(classes sharing a name: {moved[:5]})")
    return merged
