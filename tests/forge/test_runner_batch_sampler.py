"""``dataset.train_batch_sampler``: a configured batch sampler replaces the runner's sampler and batch size."""

from __future__ import annotations

import torch
from mmengine.hooks import DistSamplerSeedHook
from omegaconf import OmegaConf

from forge.runner import build_dataloader


class EvenOddBatches:
    """Batches of ``batch_size`` indices: even ones first, then odd ones, rotated by the epoch."""

    def __init__(self, dataset, batch_size: int, seed: int, offset: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.offset, self.epoch = len(dataset), batch_size, seed, offset, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        order = [i for i in range(self.n) if i % 2 == 0] + [i for i in range(self.n) if i % 2]
        k = (self.offset + self.epoch) % self.n
        return order[k:] + order[:k]

    def __iter__(self):
        order = self._order()
        for i in range(0, self.n - self.batch_size + 1, self.batch_size):
            yield order[i:i + self.batch_size]

    def __len__(self) -> int:
        return self.n // self.batch_size


def _cfg(sampler: bool):
    ds = {"collate_fn": None}
    if sampler:
        ds["train_batch_sampler"] = {"_target_": f"{__name__}.EvenOddBatches", "offset": 1}
    return OmegaConf.create(ds), OmegaConf.create({"batch_size": 3, "num_workers": 0})


def test_configured_batch_sampler_builds_the_batches():
    data = list(range(10))
    ds_cfg, schedule = _cfg(True)
    loader = build_dataloader(data, ds_cfg, schedule, train=True, seed=0, by_epoch=True)
    assert len(loader) == 3
    order = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
    assert [b.tolist() for b in loader] == [order[1:4], order[4:7], order[7:10]]

    class Loop:  # what DistSamplerSeedHook reads
        dataloader = loader

    class Runner:
        train_loop, epoch = Loop, 2

    DistSamplerSeedHook().before_train_epoch(Runner)
    assert [b.tolist() for b in loader][0] == order[3:6]  # epoch 2: rotated by offset 1 + 2
    # validation loaders and unconfigured training loaders keep the runner's sampler and batch size
    val = build_dataloader(data, ds_cfg, schedule, train=False, seed=0, by_epoch=True)
    assert [len(b) for b in val] == [3, 3, 3, 1]
    plain_cfg, _ = _cfg(False)
    plain = build_dataloader(data, plain_cfg, schedule, train=True, seed=0, by_epoch=True)
    assert sorted(torch.cat(list(plain)).tolist()) == data
