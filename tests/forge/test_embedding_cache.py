"""forge.embedding_cache and forge-cache-embeddings: one file per image, atomic, keyed by teacher and input size,
resumable, every bad entry an error naming its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forge.data.shapes import make_shapes
from forge.embedding_cache import (
    EmbeddingCache,
    EmbeddingCacheError,
    cache_fingerprint,
    file_sha256,
    state_dict_sha256,
    teacher_fingerprint,
    write_embeddings,
)
from tests.forge.helpers import ROOT, compose_cfg


class TinyTeacher(nn.Module):
    """Resize to ``input_size`` square, one conv: a (4, s/4, s/4) embedding per image. Counts its calls."""

    def __init__(self, input_size: int = 32, checkpoint: str | None = None, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.input_size = input_size
        self.conv = nn.Conv2d(3, 4, 4, stride=4)
        self.checkpoint = checkpoint
        if checkpoint is not None:
            self.load_state_dict(torch.load(checkpoint, weights_only=True))
        self.calls = 0

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        self.calls += len(images)
        x = torch.stack([F.interpolate(i[None].float(), (self.input_size,) * 2, mode="bilinear")[0] for i in images])
        return self.conv(x / 255.0)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(str(root), num_train=5, num_val=2, size=64, seed=0)
    return str(root)


def _dataset(root: str):
    from forge.data.coco_dataset import CocoInstanceDataset

    return CocoInstanceDataset(os.path.join(root, "annotations", "instances_train.json"), os.path.join(root, "train"))


def test_fingerprints():
    a, b = TinyTeacher(seed=0), TinyTeacher(seed=1)
    assert state_dict_sha256(a) == state_dict_sha256(TinyTeacher(seed=0)) != state_dict_sha256(b)
    fa, desc = teacher_fingerprint(a)
    assert len(fa) == 16 and desc["weights_sha256"] == state_dict_sha256(a) and desc["input_size"] == 32
    assert fa != teacher_fingerprint(b)[0]
    assert fa != teacher_fingerprint(TinyTeacher(input_size=64, seed=0))[0]  # the input size is part of the key
    assert cache_fingerprint("x", 32) != cache_fingerprint("x", [32, 32])


def test_write_resume_and_read(shapes_root, tmp_path):
    ds = _dataset(shapes_root)
    ckpt = tmp_path / "teacher.pth"
    torch.save(TinyTeacher(seed=3).state_dict(), ckpt)
    teacher = TinyTeacher(checkpoint=str(ckpt))
    fp, desc = teacher_fingerprint(teacher)
    assert desc["weights_sha256"] == file_sha256(ckpt)  # a checkpoint file is hashed as a file

    cache_dir = tmp_path / "cache"
    out = write_embeddings(teacher, ds, cache_dir, batch_size=2, log_fn=None)
    assert out == dict(fingerprint=fp, dir=str(cache_dir / fp), written=5, skipped=0, total=5)
    assert teacher.calls == 5
    meta = json.loads((cache_dir / fp / "meta.json").read_text())
    assert meta["shape"] == [4, 8, 8] and meta["dtype"] == "float16" and meta["fingerprint"] == fp
    assert sorted(os.listdir(cache_dir / fp)) == ["1.pt", "2.pt", "3.pt", "4.pt", "5.pt", "meta.json"]

    # the stored value is the teacher's output on that image, in float16
    reader = EmbeddingCache(cache_dir, fp)
    item = ds[2]
    want = teacher([item["inputs"]])[0].half()
    got = reader.load(item["data_samples"].meta.image_id)
    assert got.dtype == torch.float16 and torch.equal(got, want)
    assert EmbeddingCache(cache_dir).fingerprint == fp  # the only cache under the root
    assert 3 in reader and 99 not in reader

    # an interrupted run resumes: delete two entries and leave a stale temporary file
    os.remove(cache_dir / fp / "2.pt")
    os.remove(cache_dir / fp / "5.pt")
    (cache_dir / fp / "4.pt.tmp123").write_bytes(b"partial")
    teacher.calls = 0
    out = write_embeddings(teacher, ds, cache_dir, log_fn=None)
    assert (out["written"], out["skipped"], teacher.calls) == (2, 3, 2)
    assert not (cache_dir / fp / "4.pt.tmp123").exists()
    assert torch.equal(reader.load(2), teacher([ds[1]["inputs"]])[0].half())

    # another teacher goes to another folder; the root then needs a fingerprint
    other = write_embeddings(TinyTeacher(seed=9), ds, cache_dir, dtype="float32", log_fn=None)
    assert other["fingerprint"] != fp and other["written"] == 5
    with pytest.raises(EmbeddingCacheError, match="holds 2 caches"):
        EmbeddingCache(cache_dir)
    assert EmbeddingCache(cache_dir, other["fingerprint"]).load(1).dtype == torch.float32


def test_bad_entries_are_errors_naming_the_file(shapes_root, tmp_path):
    ds = _dataset(shapes_root)
    teacher = TinyTeacher(seed=4)
    out = write_embeddings(teacher, ds, tmp_path, log_fn=None)
    fp, d = out["fingerprint"], tmp_path / out["fingerprint"]
    reader = EmbeddingCache(tmp_path, fp)

    (d / "1.pt").write_bytes(b"not a torch file")
    with pytest.raises(EmbeddingCacheError, match=r"1\.pt: corrupt cache entry"):
        reader.load(1)
    with pytest.raises(EmbeddingCacheError, match=r"1\.pt: corrupt"):  # a rerun checks present entries
        write_embeddings(teacher, ds, tmp_path, log_fn=None)
    assert write_embeddings(teacher, ds, tmp_path, verify_existing=False, log_fn=None)["written"] == 0

    good = torch.load(d / "2.pt", weights_only=True)
    torch.save(dict(good, image_id="3"), d / "2.pt")  # another image's entry under this name
    with pytest.raises(EmbeddingCacheError, match=r"2\.pt: holds image '3', not 2"):
        reader.load(2)
    torch.save(dict(good, fingerprint="0123456789abcdef"), d / "2.pt")
    with pytest.raises(EmbeddingCacheError, match=r"2\.pt: written for teacher fingerprint '0123456789abcdef'"):
        reader.load(2)
    torch.save(dict(good, embedding=torch.zeros(4, 4, 4, dtype=torch.float16)), d / "2.pt")
    with pytest.raises(EmbeddingCacheError, match=r"2\.pt: embedding of shape \(4, 4, 4\)"):
        reader.load(2)
    torch.save(dict(good, embedding=good["embedding"].float()), d / "2.pt")
    with pytest.raises(EmbeddingCacheError, match=r"2\.pt: embedding of dtype torch.float32"):
        reader.load(2)
    torch.save({"weights": 1}, d / "2.pt")
    with pytest.raises(EmbeddingCacheError, match=r"2\.pt: not a cache entry"):
        reader.load(2)
    with pytest.raises(EmbeddingCacheError, match=r"77\.pt: no cached embedding for image 77"):
        reader.load(77)
    # the same teacher with another stored dtype would mix dtypes in one folder
    (d / "1.pt").unlink()
    with pytest.raises(EmbeddingCacheError, match=r"meta\.json: the cache has dtype='float16', this run 'float32'"):
        write_embeddings(teacher, ds, tmp_path, dtype="float32", verify_existing=False, log_fn=None)
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps(dict(meta, fingerprint="ffff")))
    with pytest.raises(EmbeddingCacheError, match=r"meta\.json: fingerprint 'ffff' differs"):
        EmbeddingCache(tmp_path, fp)
    with pytest.raises(EmbeddingCacheError, match="cannot name a cache file"):
        reader.path("../x")


def test_cli_composes_and_resumes(shapes_root, tmp_path):
    from forge.cli.cache_embeddings import run_cache

    overrides = [
        "dataset=shapes", f"dataset.root={shapes_root}", "pipeline=yolact_shapes",
        "cache.split=val", f"cache.dir={tmp_path}", "cache.num_workers=0", "runtime.device=cpu",
        "cache.teacher={_target_: tests.forge.test_embedding_cache.TinyTeacher, seed: 2}",
    ]
    cfg = compose_cfg(overrides, "cache_embeddings")
    # the experiment's augmentation is off: the teacher sees the stored image (yolact_shapes would resize it)
    assert cfg.dataset.val.pipeline is None and cfg.dataset.train.resample_empty is False
    out = run_cache(cfg)
    assert (out["written"], out["total"]) == (2, 2)
    from forge.data.coco_dataset import CocoInstanceDataset

    raw = CocoInstanceDataset(f"{shapes_root}/annotations/instances_val.json", f"{shapes_root}/val")[1]
    stored = EmbeddingCache(tmp_path, out["fingerprint"]).load(raw["data_samples"].meta.image_id)
    assert torch.equal(stored, TinyTeacher(seed=2)([raw["inputs"]])[0].half())
    assert run_cache(cfg)["skipped"] == 2
    from forge.config import ConfigError

    with pytest.raises(ConfigError, match="cache.dir is required"):
        run_cache(compose_cfg([o for o in overrides if not o.startswith("cache.dir=")], "cache_embeddings"))
    # the console entry point (python -m): same config, nothing left to do
    cmd = [sys.executable, "-m", "forge.cli.cache_embeddings", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 written, 2 already there" in proc.stdout
