"""Metrics gathered over 2 gloo processes equal the 1-process figures, with the sampler's padding on an odd split."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import DefaultSampler
from mmengine.evaluator import Evaluator

from forge.evaluation.coco import CocoMetric
from tests.forge.evaluation.random_cases import make_coco_case
from tests.forge.evaluation.test_coco import _samples


class _Indexable:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _evaluate(samples, coco, ann_file, batch=4):
    """What a ValLoop does on this rank: its DefaultSampler shard (padded), batched, then a gathered evaluate."""
    sampler = DefaultSampler(_Indexable(len(samples)), shuffle=False)
    order = list(iter(sampler))
    ev = Evaluator(CocoMetric(ann_file=ann_file, metric=["bbox", "segm"], round_digits=None))
    ev.dataset_meta = {"classes": coco.class_names, "cat_ids": coco.cat_ids}
    for i in range(0, len(order), batch):
        ev.process(data_samples=[samples[j] for j in order[i : i + batch]], data_batch=None)
    return ev.evaluate(len(samples)), len(order)


def _worker(rank: int, world: int, port: int, ann_file: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    case = make_coco_case(seed=11, num_images=41, num_classes=8)
    samples, coco = _samples(case, with_masks=True)
    metrics, seen = _evaluate(samples, coco, ann_file)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(dict(metrics=metrics, seen=seen), f)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_process_coco_equals_one_process(tmp_path):
    case = make_coco_case(seed=11, num_images=41, num_classes=8)
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(case["gt"]))
    samples, coco = _samples(case, with_masks=True)
    assert len(samples) % 2 == 1, "the split must be uneven so that the sampler pads"
    single, _ = _evaluate(samples, coco, str(ann))

    mp.start_processes(_worker, args=(2, _free_port(), str(ann), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    # each rank saw half of the padded split: one image twice in total
    assert sum(r["seen"] for r in ranks) == len(samples) + 1
    for r in ranks:
        assert r["metrics"] == single
