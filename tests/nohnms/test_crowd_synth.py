"""The synthetic crowd set: deterministic, readable by the CrowdHuman reader and dataset, crowded (many full-body
pairs above IoU 0.5) and with ignore regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forge.data.crowd_synth import crowd_synth_ready, make_crowd_synth, render_crowd_image
from forge.data.crowdhuman_dataset import CrowdHumanDataset
from forge.data.crowdhuman_reader import read_gt_odgt, xywh_to_xyxy
from forge.ops import box_iou


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("crowd")
    make_crowd_synth(str(out), num_train=12, num_val=4, seed=0)
    return out


def test_files_meta_and_determinism(synth, tmp_path):
    assert crowd_synth_ready(str(synth), train=12, val=4, width=320, height=240, seed=0, ignore_prob=0.5)
    assert not crowd_synth_ready(str(synth), train=13)
    assert len(list((synth / "Images").glob("*.png"))) == 16
    make_crowd_synth(str(tmp_path), num_train=0, num_val=4, seed=0)
    assert (tmp_path / "annotation_val.odgt").read_text() == (synth / "annotation_val.odgt").read_text()
    a, _ = render_crowd_image(np.random.default_rng(5))
    b, _ = render_crowd_image(np.random.default_rng(5))
    assert np.array_equal(a, b) and a.shape == (240, 320, 3) and a.dtype == np.uint8
    with pytest.raises(ValueError, match="num_train"):
        make_crowd_synth(str(tmp_path), num_train=-1)


def test_crowded_with_ignore_regions(synth):
    recs = read_gt_odgt(str(synth / "annotation_train.odgt"))
    pairs_over_half = ignored = persons = 0
    for r in recs:
        keep = ~r.ignore
        boxes = torch.from_numpy(xywh_to_xyxy(r.boxes("fbox"))[keep]).float()
        persons += len(boxes)
        ignored += int(r.ignore.sum())
        iou = box_iou(boxes, boxes).triu(1)
        pairs_over_half += int((iou > 0.5).sum())
        vis = xywh_to_xyxy(r.boxes("vbox"))[keep]
        full = xywh_to_xyxy(r.boxes("fbox"))[keep]
        assert (vis[:, 0] >= np.floor(full[:, 0]) - 1).all() and (vis[:, 2] <= np.ceil(full[:, 2]) + 1).all()
    assert persons >= 12 * 4 and ignored >= 2
    # the 600-image train split: 516 pairs above IoU 0.5 (18% of the persons have such a neighbour)
    assert pairs_over_half >= 5


def test_read_as_crowdhuman(synth):
    ds = CrowdHumanDataset(str(synth / "annotation_val.odgt"), str(synth / "Images"), img_ext=".png")
    item = ds[0]
    s = item["data_samples"]
    assert item["inputs"].shape == (3, 240, 320) and s.gt.iscrowd.dtype == torch.bool
    assert s.meta.extra["ID"] == "val_000000" and len(s.gt) > 0
