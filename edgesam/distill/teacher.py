"""The frozen teacher of EdgeSAM's distillation: its image embeddings, computed live or read from the embedding
cache, and its prompt encoder + mask decoder (phase 2 decodes every prompt with the teacher as well).

* live: the teacher's image encoder runs on the same preprocessed batch as the student, in eval mode, without
  gradients;
* cached (``cache_dir``): the embeddings that ``forge-cache-embeddings`` wrote with :class:`SamEmbedder` are read by
  image id through :class:`forge.embedding_cache.EmbeddingCache`. The cache holds one embedding per image, so the
  training pipeline must not augment (the official code sets ``NO_RAND``): a flipped image is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.distill.builders import load_weights
from edgesam.sam import Sam
from forge.data.structures import DetSample

__all__ = ["Teacher", "SamEmbedder"]


class Teacher(nn.Module):
    """A frozen :class:`Sam` (weights from ``checkpoint`` when given) and, optionally, a cache of its embeddings.

    Args:
        model: the teacher's architecture.
        checkpoint: its weights (a released SAM file, or a ``SamPromptTrainer`` checkpoint); None keeps ``model``'s.
        cache_dir: an ``EmbeddingCache`` root written by ``forge-cache-embeddings`` with this teacher; None = live.
        cache_fingerprint: the cache folder's fingerprint (None: the only one under ``cache_dir``).
    """

    def __init__(self, model: Sam, checkpoint: str | None = None, cache_dir: str | None = None,
                 cache_fingerprint: str | None = None) -> None:
        super().__init__()
        self.sam = model
        self.checkpoint = checkpoint
        if checkpoint:
            load_weights(self.sam, checkpoint)
        self.sam.eval()
        self.sam.requires_grad_(False)
        self.cache = None
        if cache_dir:
            from forge.embedding_cache import EmbeddingCache

            self.cache = EmbeddingCache(cache_dir, cache_fingerprint)

    def train(self, mode: bool = True) -> Teacher:  # always frozen, BatchNorm included
        return super().train(False)

    @torch.no_grad()
    def embeddings(self, images: Tensor, data_samples: Sequence[DetSample]) -> Tensor:
        """``(B, C, h, w)`` embeddings of the preprocessed, padded batch ``images (B, 3, S, S)``."""
        if self.cache is None:
            return self.sam.image_encoder(images).float()
        out = []
        for s in data_samples:
            if s.meta.flip:
                raise ValueError(f"image {s.meta.image_id} ({s.meta.file_name}) was flipped, but cached teacher "
                                 "embeddings are of the unaugmented image: remove random augmentation from the "
                                 "training pipeline (or set model.teacher.cache_dir=null to run the teacher live)")
            out.append(self.cache.load(s.meta.image_id))
        emb = torch.stack(out).to(images.device, torch.float32)
        want = (images.shape[0], self.sam.prompt_encoder.embed_dim, *self.sam.prompt_encoder.image_embedding_size)
        if tuple(emb.shape) != want:
            raise ValueError(f"cached embeddings in {self.cache.dir} are {tuple(emb.shape[1:])}, the teacher decodes "
                             f"{want[1:]}: the cache was written by another teacher or input size")
        return emb


class SamEmbedder(nn.Module):
    """The teacher protocol of :mod:`forge.embedding_cache` for a SAM image encoder.

    ``forward(images)``: a list of ``(3, h, w)`` RGB pixel images (uint8 or float), each with
    ``max(h, w) <= input_size`` (the pipeline resized the longest side), normalised with SAM's mean / std and padded
    bottom-right as :meth:`Sam.preprocess`; returns ``(B, C, S/16, S/16)``.

    Args:
        model: the SAM whose ``image_encoder`` is cached (its prompt encoder and decoder are not used).
        checkpoint: its weights file; its sha256 keys the cache.
        name: recorded in the cache's ``meta.json``.
    """

    def __init__(self, model: Sam, checkpoint: str | None = None, name: str | None = None) -> None:
        super().__init__()
        self.sam = model
        self.checkpoint = checkpoint
        self.name = name
        if checkpoint:
            load_weights(self.sam, checkpoint, only=["image_encoder."])
        self.sam.eval().requires_grad_(False)

    @property
    def input_size(self) -> int:
        return self.sam.img_size

    @torch.no_grad()
    def forward(self, images: Sequence[Tensor]) -> Tensor:
        batch = []
        for img in images:
            img = img.to(self.sam.device).float()
            if img.ndim != 3 or img.shape[0] != 3:
                raise ValueError(f"SamEmbedder: images must be (3, H, W), got {tuple(img.shape)}")
            batch.append(self.sam.preprocess(img))
        return self.sam.image_encoder(torch.stack(batch))


def pad_to(x: Tensor, size: int) -> Tensor:
    """``(..., h, w)`` zero-padded bottom-right to ``(..., size, size)``."""
    h, w = x.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"input of {h}x{w} does not fit the model input {size}; resize its longest side first")
    return F.pad(x, (0, size - w, 0, size - h))
