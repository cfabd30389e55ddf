"""``forge-cache-embeddings``: run a teacher once per image of a dataset split and store its outputs on disk.

    forge-cache-embeddings experiment=<paper>/<row> cache.dir=/data/cache cache.teacher.checkpoint=teacher.pth

The config is composed as for ``forge-train`` (root ``cache_embeddings.yaml``: the training groups plus ``cache``);
:mod:`forge.embedding_cache` describes the teacher protocol, the layout and the checks.
"""

from __future__ import annotations

import sys

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError
from .common import CONFIG_DIR, check_group_overrides, report_and_exit, with_user_config_dirs


def run_cache(cfg: DictConfig) -> dict:
    """Instantiate ``cache.teacher`` and the split, write the missing entries; returns the writer's summary."""
    from ..embedding_cache import EmbeddingCacheError, write_embeddings
    from ..precision import resolve_precision
    from ..runner import run_device

    c = cfg.cache
    for key in ("dir", "teacher"):
        if OmegaConf.is_missing(c, key):
            raise ConfigError(f"cache.{key} is required: set it on the command line, e.g. cache.{key}=...")
    node = c.get("dataset") or OmegaConf.select(cfg, f"dataset.{c.split}")
    if node is None:
        raise ConfigError(f"cache.split={c.split!r}: the dataset has no such split (and cache.dataset is not set)")
    if c.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("cache.device='cuda' is invalid: no CUDA device is available (use auto or cpu)")
    device = run_device(OmegaConf.create({"runtime": {"device": c.device}}))
    try:
        dtype = resolve_precision(str(c.precision), device)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    teacher = instantiate(c.teacher, _convert_="partial")
    dataset = instantiate(node, _convert_="partial")
    try:
        out = write_embeddings(teacher, dataset, str(c.dir), dtype=str(c.dtype), batch_size=int(c.batch_size),
                               num_workers=int(c.num_workers), device=device, autocast_dtype=dtype,
                               verify_existing=bool(c.verify_existing), shard=(int(c.shard), int(c.num_shards)))
    except EmbeddingCacheError as err:
        raise ConfigError(str(err)) from err
    print(f"forge-cache-embeddings: {out['written']} written, {out['skipped']} already there, {out['total']} in "
          f"all; fingerprint {out['fingerprint']} ({out['dir']})", flush=True)
    return out


@hydra.main(config_path=CONFIG_DIR, config_name="cache_embeddings", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    try:
        run_cache(cfg)
    except ConfigError as err:
        report_and_exit(err)


def main() -> None:
    sys.argv[1:] = with_user_config_dirs(sys.argv[1:])
    check_group_overrides(sys.argv[1:])
    sys.exit(_main())


if __name__ == "__main__":
    main()
