"""The denseclip experiments compose, carry the paper's numbers, and hold the official unseen splits and schedules."""

from __future__ import annotations

import glob
import os

import pytest
from omegaconf import OmegaConf

from forge.data.semseg import resolve_classes
from tests.forge.helpers import compose_cfg

EXPERIMENTS = sorted(os.path.basename(f)[:-5] for f in glob.glob("forge/configs/experiment/denseclip/*.yaml"))
UNSEEN = {  # MaskCLIP's zero-shot splits by name (paper / official configs)
    "voc20": "pottedplant sheep sofa train tvmonitor",
    "context60": "cow motorbike sofa cat boat fence bird tvmonitor keyboard aeroplane",
    "coco_stuff": "cow giraffe suitcase frisbee skateboard carrot scissors cardboard clouds grass playingfield river "
                  "road tree wall-concrete",
}


def _cfg(name):
    cfg = compose_cfg([f"experiment=denseclip/{name}"], "test")
    OmegaConf.resolve(cfg)
    return cfg


def test_one_experiment_per_paper_row():
    rows = {f"maskclip_{a}_{d}" for a in ("rn50", "rn50x16", "vit16") for d in ("voc20", "context59", "coco_stuff")}
    rows |= {f"maskclip_plus_{a}_{d}" for a in ("rn50", "rn50x16", "vit16") for d in ("voc20", "context59",
                                                                                       "coco_stuff")}
    rows |= {"maskclip_vit16_kspd_context59", "maskclip_vit16_kspd_coco_stuff"}
    rows |= {f"maskclip_plus_zs_rn50_{d}" for d in UNSEEN}
    assert rows <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e.startswith("maskclip_") and "plus" not in e
                                  and "colour" not in e])
def test_maskclip_rows(name):
    cfg = _cfg(name)
    assert cfg.model._target_ == "denseclip.segmentor.MaskCLIPSegmentor"
    assert isinstance(cfg.paper_miou, float) and 5 < cfg.paper_miou < 60
    assert cfg.model.maskclip.class_names == cfg.dataset.classes
    ks, pd = cfg.model.maskclip.key_smoothing, cfg.model.maskclip.prompt_denoising
    assert (ks, pd) == ((1.0, 0.5) if "kspd" in name else (0.0, 0.0))
    scale = cfg.pipeline.val[0].scale
    assert list(scale) == ([520, 520] if "context" in name else [2048, 512])


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e.startswith("maskclip_plus")])
def test_maskclip_plus_rows(name):
    cfg = _cfg(name)
    s = cfg.schedule
    assert s.optimizer._target_ == "torch.optim.SGD" and s.schedulers[0]._target_ == "mmengine.optim.PolyLR"
    assert s.schedulers[0].power == 0.9 and s.base_batch_size == 16
    assert list(cfg.model.backbone_layers) == [3, 4, 23, 3]
    crop = list(cfg.pipeline.crop_size)
    assert crop == ([480, 480] if "context" in name else [512, 512])
    assert cfg.pipeline.train[1].cat_max_ratio == 0.75
    if "_zs_" in name:
        ds = name.rsplit("_rn50_", 1)[1]
        names = resolve_classes(cfg.dataset.classes)
        unseen = list(cfg.model.unlabeled_classes)
        assert [names[i] for i in unseen] == UNSEEN[ds].split()
        assert list(cfg.dataset.train.suppress_labels) == unseen
        assert list(cfg.dataset.evaluator[0].unseen_classes) == unseen
        assert cfg.model.self_train_start * 10 == s.max_iters  # self-training after 10 % of the schedule
        assert s.max_iters == {"voc20": 20000, "context60": 40000, "coco_stuff": 80000}[ds]
        assert (cfg.model.decoder == "deeplabv3plus") == (ds == "context60") == cfg.model.cls_bg
    else:
        assert cfg.dataset.train.suppress_labels == "all" and cfg.model.self_train_start is None
        assert s.max_iters == {"voc20": 2000, "context59": 4000, "coco_stuff": 8000}[cfg.dataset.name]
        assert s.lr == 0.01
