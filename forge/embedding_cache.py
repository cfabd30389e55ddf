"""Teacher outputs on disk, one file per image: run a large frozen network once per image, not once per epoch.

Used by distillation (EdgeSAM phase 1 caches SAM-H's image embeddings; OV-SAM caches SAM features). Paper-neutral:
the teacher is any ``nn.Module`` following the protocol below, the images come from any forge dataset.

Teacher protocol:

* ``teacher(images)`` with ``images`` a list of B ``(3, H_i, W_i)`` uint8 RGB tensors on the teacher's device
  returns a ``(B, *shape)`` float tensor (the teacher does its own resizing and normalisation);
* ``teacher.input_size``: the network input size (int or sequence), part of the fingerprint;
* optional ``teacher.checkpoint``: the weights file; its sha256 is the weights' fingerprint. Without one (seeded or
  in-memory weights), the sha256 of the state dict (names, dtypes, shapes and bytes, in name order) is used.

Layout: ``<dir>/<fingerprint>/meta.json`` (fingerprint, teacher, weights hash, input size, shape, dtype) and
``<dir>/<fingerprint>/<image_id>.pt``, each a ``torch.save`` dict ``{image_id, fingerprint, embedding}`` written to
a temporary file and renamed into place (``os.replace``), so a file that exists is complete. The fingerprint is the
first 16 hex digits of ``sha256(weights hash | input size)``: another teacher or input size goes to another folder.
An entry whose file is unreadable, or whose ``image_id`` / ``fingerprint`` / shape / dtype differ from what is
expected, raises :class:`EmbeddingCacheError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from forge.progress import Progress

__all__ = [
    "EmbeddingCache",
    "EmbeddingCacheError",
    "cache_fingerprint",
    "file_sha256",
    "image_ids",
    "item_image_id",
    "state_dict_sha256",
    "teacher_fingerprint",
    "write_embeddings",
]

log = logging.getLogger(__name__)

META_FILE = "meta.json"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class EmbeddingCacheError(ValueError):
    """A cache entry or folder that is unreadable or does not match the expected teacher, image or shape."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """Hex sha256 of a module's state dict: names, dtypes, shapes and bytes, in name order (device-independent)."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_fingerprint(weights_sha256: str, input_size: int | Sequence[int]) -> str:
    """16 hex digits of ``sha256(weights hash | input size)``."""
    size = [int(input_size)] if isinstance(input_size, int) else [int(v) for v in input_size]
    return hashlib.sha256(f"{weights_sha256}|{size}".encode()).hexdigest()[:16]


def teacher_fingerprint(teacher: nn.Module) -> tuple[str, dict]:
    """``(fingerprint, description)`` of a teacher (see the module docstring); the description goes to
    ``meta.json``."""
    size = getattr(teacher, "input_size", None)
    if size is None:
        raise EmbeddingCacheError(f"teacher {type(teacher).__name__} has no 'input_size' attribute (part of the key)")
    checkpoint = getattr(teacher, "checkpoint", None)
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise EmbeddingCacheError(f"teacher checkpoint {checkpoint} does not exist")
        weights, source = file_sha256(checkpoint), f"sha256 of {os.path.abspath(checkpoint)}"
    else:
        weights, source = state_dict_sha256(teacher), "sha256 of the state dict (no checkpoint file)"
    fp = cache_fingerprint(weights, size)
    desc = dict(fingerprint=fp, teacher=type(teacher).__module__ + "." + type(teacher).__qualname__,
                name=getattr(teacher, "name", None), checkpoint=checkpoint, weights_sha256=weights,
                weights_source=source, input_size=size if isinstance(size, int) else list(size))
    return fp, desc


def _file_name(image_id: Any) -> str:
    key = str(int(image_id)) if isinstance(image_id, (int,)) or (
        isinstance(image_id, Tensor) and image_id.numel() == 1) else str(image_id)
    if not _ID.match(key):
        raise EmbeddingCacheError(f"image id {image_id!r} cannot name a cache file (letters, digits, '._-' only)")
    return f"{key}.pt"


class EmbeddingCache:
    """Reader (and writer) of one teacher's cache folder ``<dir>/<fingerprint>``.

    Args:
        dir: the cache root given to ``forge-cache-embeddings cache.dir=``.
        fingerprint: the teacher's fingerprint (printed by the writer, in ``meta.json``); None takes the only
            fingerprint folder under ``dir`` (an error when there are none or several).
    """

    def __init__(self, dir: str | os.PathLike, fingerprint: str | None = None) -> None:
        self.root = os.fspath(dir)
        if fingerprint is None:
            found = sorted(d for d in os.listdir(self.root) if os.path.isfile(os.path.join(self.root, d, META_FILE))) \
                if os.path.isdir(self.root) else []
            if len(found) != 1:
                raise EmbeddingCacheError(
                    f"{self.root}: fingerprint not given and the folder holds {len(found)} caches "
                    f"({', '.join(found) or 'none'}): name one")
            fingerprint = found[0]
        self.fingerprint = str(fingerprint)
        self.dir = os.path.join(self.root, self.fingerprint)
        self.meta: dict = {}
        meta_path = os.path.join(self.dir, META_FILE)
        if os.path.isfile(meta_path):
            self.meta = self._read_meta(meta_path)

    def _read_meta(self, path: str) -> dict:
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise EmbeddingCacheError(f"{path}: unreadable cache description: {e}") from None
        if not isinstance(meta, dict) or meta.get("fingerprint") != self.fingerprint:
            got = meta.get("fingerprint") if isinstance(meta, dict) else meta
            raise EmbeddingCacheError(f"{path}: fingerprint {got!r} differs from its folder's {self.fingerprint!r}")
        return meta

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The shape of every entry (from ``meta.json``), or None before the first entry is written."""
        shape = self.meta.get("shape")
        return None if shape is None else tuple(shape)

    @property
    def dtype(self) -> torch.dtype | None:
        name = self.meta.get("dtype")
        return None if name is None else DTYPES[name]

    def path(self, image_id: Any) -> str:
        return os.path.join(self.dir, _file_name(image_id))

    def __contains__(self, image_id: Any) -> bool:
        return os.path.isfile(self.path(image_id))

    def load(self, image_id: Any) -> Tensor:
        """The stored embedding of ``image_id`` (CPU, the stored dtype), checked against the key, the fingerprint and
        ``meta.json``'s shape and dtype.

        Raises:
            EmbeddingCacheError: missing, unreadable or mismatched entry (the message names the file).
        """
        path = self.path(image_id)
        if not os.path.isfile(path):
            raise EmbeddingCacheError(f"{path}: no cached embedding for image {image_id!r} "
                                      f"(run forge-cache-embeddings for this dataset and teacher)")
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types on a truncated / foreign file
            raise EmbeddingCacheError(f"{path}: corrupt cache entry ({type(e).__name__}: {e})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("embedding"), Tensor):
            raise EmbeddingCacheError(f"{path}: not a cache entry (expected a dict with an 'embedding' tensor)")
        if str(entry.get("image_id")) != _file_name(image_id)[:-3]:
            raise EmbeddingCacheError(f"{path}: holds image {entry.get('image_id')!r}, not {image_id!r}")
        if entry.get("fingerprint") != self.fingerprint:
            raise EmbeddingCacheError(f"{path}: written for teacher fingerprint {entry.get('fingerprint')!r}, "
                                      f"expected {self.fingerprint!r}")
        emb = entry["embedding"]
        if self.shape is not None and tuple(emb.shape) != self.shape:
            raise EmbeddingCacheError(f"{path}: embedding of shape {tuple(emb.shape)}, the cache's is {self.shape}")
        if self.dtype is not None and emb.dtype != self.dtype:
            raise EmbeddingCacheError(f"{path}: embedding of dtype {emb.dtype}, the cache's is {self.dtype}")
        return emb

    def save(self, image_id: Any, embedding: Tensor) -> str:
        """Write one entry atomically (temporary file + ``os.replace``); returns its path."""
        path = self.path(image_id)
        tmp = f"{path}.tmp{os.getpid()}"
        key = _file_name(image_id)[:-3]
        torch.save({"image_id": key, "fingerprint": self.fingerprint, "embedding": embedding.detach().cpu()}, tmp)
        os.replace(tmp, path)
        return path

    def check_meta(self, desc: Mapping[str, Any], dtype: str, shape: Sequence[int] | None = None) -> None:
        """Raise unless the existing ``meta.json`` describes the same teacher, input size, dtype (and shape)."""
        path = os.path.join(self.dir, META_FILE)
        meta = dict(desc, dtype=dtype, shape=None if shape is None else list(shape))
        for key in ("weights_sha256", "input_size", "dtype", "shape"):
            if key == "shape" and shape is None:
                continue
            if self.meta.get(key) != meta[key]:
                raise EmbeddingCacheError(f"{path}: the cache has {key}={self.meta.get(key)!r}, this run "
                                          f"{meta[key]!r} (another dtype or shape needs another cache.dir)")

    def write_meta(self, desc: Mapping[str, Any], shape: Sequence[int], dtype: str) -> None:
        """Create the folder's ``meta.json`` or check that an existing one describes the same cache."""
        meta = dict(desc, shape=list(shape), dtype=dtype)
        path = os.path.join(self.dir, META_FILE)
        if self.meta:
            self.check_meta(desc, dtype, shape)
            return
        os.makedirs(self.dir, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(tmp, path)
        self.meta = meta


def item_image_id(dataset: Any, index: int, item: Any = None) -> Any:
    """The image id of ``dataset[index]`` without reading the image where the dataset allows it
    (``get_record(i)['image_id']``), else from the item (``item['data_samples'].meta.image_id`` or
    ``item['image_id']``)."""
    get_record = getattr(dataset, "get_record", None)
    if item is None and callable(get_record):
        record = get_record(index)
        if isinstance(record, Mapping) and "image_id" in record:
            return record["image_id"]
    if item is None:
        item = dataset[index]
    if isinstance(item, Mapping):
        sample = item.get("data_samples")
        meta = getattr(sample, "meta", None)
        if meta is not None and getattr(meta, "image_id", None) is not None:
            return meta.image_id
        if "image_id" in item:
            return item["image_id"]
    raise EmbeddingCacheError(f"dataset item {index} carries no image id (data_samples.meta.image_id or image_id)")


def _image(item: Any, index: int) -> Tensor:
    img = item.get("inputs") if isinstance(item, Mapping) else None
    if not isinstance(img, Tensor) or img.ndim != 3 or img.shape[0] != 3:
        shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
        raise EmbeddingCacheError(f"dataset item {index}: 'inputs' must be a (3, H, W) image tensor, got {shape}")
    return img


def write_embeddings(teacher: nn.Module, dataset: Any, cache_dir: str | os.PathLike, *, dtype: str = "float16",
                     batch_size: int = 1, num_workers: int = 0, device: str | torch.device = "cpu",
                     autocast_dtype: torch.dtype | None = None, verify_existing: bool = True,
                     shard: tuple[int, int] = (0, 1), log_fn: Callable[[str], Any] | None = print) -> dict:
    """Run ``teacher`` on every image of ``dataset`` not yet in the cache and store the outputs.

    Present entries are skipped (an interrupted run resumes); with ``verify_existing`` each is loaded and checked
    first, so a corrupt or mismatched one stops the run with an error naming its file. ``shard=(i, n)`` handles
    the images ``i, i + n, ...`` (one process per device).

    Returns:
        ``dict(fingerprint, dir, written, skipped, total)``.
    """
    if dtype not in DTYPES:
        raise EmbeddingCacheError(f"dtype={dtype!r} is invalid: choose one of {', '.join(DTYPES)}")
    shard_index, num_shards = int(shard[0]), int(shard[1])
    if not 0 <= shard_index < num_shards:
        raise EmbeddingCacheError(f"shard {shard_index} of {num_shards} is invalid")
    teacher = teacher.to(device).eval()
    fingerprint, desc = teacher_fingerprint(teacher)
    cache = EmbeddingCache(cache_dir, fingerprint)
    os.makedirs(cache.dir, exist_ok=True)
    if cache.meta:
        cache.check_meta(desc, dtype)
    for name in os.listdir(cache.dir):  # temporary files of an interrupted write are incomplete by construction
        if ".pt.tmp" in name or ".json.tmp" in name:
            os.remove(os.path.join(cache.dir, name))
    indices = list(range(shard_index, len(dataset), num_shards))
    todo, skipped = [], 0
    for i in indices:
        image_id = item_image_id(dataset, i)
        if image_id in cache:
            if verify_existing:
                cache.load(image_id)
            skipped += 1
        else:
            todo.append(i)
    if log_fn is not None:
        log_fn(f"forge-cache-embeddings: teacher fingerprint {fingerprint} -> {cache.dir}; "
               f"{len(indices)} images, {skipped} already cached, {len(todo)} to compute")
    written = 0
    if todo:
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, todo), batch_size=batch_size,
                                             num_workers=num_workers, collate_fn=list)
        from forge.precision import autocast

        device_type = torch.device(device).type
        with Progress(total=len(todo), desc="cache embeddings", unit="img", log=log_fn) as bar, torch.no_grad():
            pos = 0
            for batch in loader:
                idx = todo[pos:pos + len(batch)]
                pos += len(batch)
                images = [_image(item, i).to(device) for item, i in zip(batch, idx)]
                with autocast(autocast_dtype, device_type):
                    out = teacher(images)
                if not isinstance(out, Tensor) or out.shape[0] != len(images):
                    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    raise EmbeddingCacheError(f"teacher returned {shape} for a batch of {len(images)} images")
                out = out.float().to(DTYPES[dtype])
                cache.write_meta(desc, out.shape[1:], dtype)  # the first batch creates it, later ones check it
                for item, i, emb in zip(batch, idx, out):
                    cache.save(item_image_id(dataset, i, item), emb.clone())
                    written += 1
                bar.update(len(batch))
    return dict(fingerprint=fingerprint, dir=cache.dir, written=written, skipped=skipped, total=len(indices))


def image_ids(dataset: Any, indices: Iterable[int] | None = None) -> list:
    """Image ids of ``dataset`` (or of ``indices``), read without decoding images where possible."""
    return [item_image_id(dataset, i) for i in (range(len(dataset)) if indices is None else indices)]
