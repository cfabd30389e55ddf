"""forge-train of a MaskCLIP+ experiment end to end (shrunk): VOC layout on disk, annotation-free labels, the
frozen MaskCLIP teacher from a CLIP file, SGD + poly LR through the shared runner, then forge-test of its
checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from open_clip.model import CLIP
from PIL import Image

from denseclip.clip_loading import save_clip
from forge.data.semseg.synthetic import make_batch


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plus")
    root = tmp / "VOC2012"
    imgs, labs, _ = make_batch(4, 0, 6, 64)
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        os.makedirs(root / d)
    stems = [f"2007_{i:06d}" for i in range(6)]
    for stem, img, lab in zip(stems, imgs, labs):
        Image.fromarray(img).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        voc_lab = np.where(lab == 255, 0, lab + 1).astype(np.uint8)  # colours -> VOC classes 1..6, 0 background
        for d in ("SegmentationClass", "SegmentationClassAug"):
            Image.fromarray(voc_lab, mode="L").save(root / d / f"{stem}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(stems[:2]) + "\n")
    (root / "ImageSets/Segmentation/aug.txt").write_text("\n".join(stems[2:4]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(stems[4:]) + "\n")
    torch.manual_seed(0)
    clip = CLIP(embed_dim=32, vision_cfg=dict(layers=[1, 1, 1, 1], width=8, image_size=64, head_width=16),
                text_cfg=dict(context_length=8, vocab_size=49408, width=32, heads=2, layers=1))
    save_clip(clip, str(tmp / "clip.pt"))
    return str(root), str(tmp / "clip.pt"), tmp


def test_forge_train_then_test_maskclip_plus(voc, monkeypatch):
    from forge.cli.test import run_test
    from forge.cli.train import run_train
    from tests.forge.helpers import compose_cfg

    root, clip, tmp = voc
    monkeypatch.setenv("DENSECLIP_CACHE", str(tmp / "cache"))
    work = tmp / "run"
    common = [f"dataset.root={root}", f"model.teacher.clip_path={clip}", "model.teacher.arch=null",
              "model.teacher.templates=single", "model.backbone_layers=[1,1,1,1]", "model.width_scale=0.125",
              "model.backbone_weights=null", "pipeline.crop_size=[48,48]", "pipeline.scale=[128,64]",
              "runtime.device=cpu", "schedule.num_workers=0", "runtime.vis.tensorboard=false",
              "runtime.num_vis_images=0", f"work_dir={work}"]
    cfg = compose_cfg(["experiment=denseclip/maskclip_plus_rn50_voc20", "schedule.max_iters=3",
                       "schedule.val_interval=3", "schedule.batch_size=2", "runtime.checkpoint.interval=3",
                       *common])
    metrics = run_train(cfg)
    assert 0.0 <= metrics["semseg/mIoU"] <= 1.0
    ckpt = work / "iter_3.pth"
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["step"]) == 3  # the pseudo-label schedule's counter is saved
    lrs = list(state["message_hub"]["log_scalars"]["train/lr"]._log_history)
    # poly: (0.01 - 1e-4) * (1 - t / T) ** 0.9 + 1e-4, mmengine's PolyLR stepping over T = 2 steps of 3 iterations
    assert lrs == pytest.approx([0.01, (0.01 - 1e-4) * 0.5**0.9 + 1e-4, 1e-4])
    tested = run_test(compose_cfg(["experiment=denseclip/maskclip_plus_rn50_voc20", f"checkpoint={ckpt}",
                                   *common[:-1], f"work_dir={tmp / 'test'}"], "test"))
    assert tested["semseg/mIoU"] == pytest.approx(metrics["semseg/mIoU"])
