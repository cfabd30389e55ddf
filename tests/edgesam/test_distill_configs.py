"""The EdgeSAM training experiments compose with the paper's numbers, and the shapes ones build."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forge.cli.common import CONFIG_DIR


def _cfg(experiment: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[f"experiment={experiment}", *overrides])


def test_paper_phase1_recipe():
    cfg = _cfg("edgesam/distill_phase1_sa1b")
    assert cfg.model._target_ == "edgesam.distill.EncoderDistiller"
    assert cfg.model.teacher.model.name == "vit_h" and cfg.model.student_encoder.img_size == 1024
    assert cfg.loss._target_ == "edgesam.losses.EmbeddingLoss"
    s = cfg.schedule
    assert s.lr * 64 / s.base_batch_size == pytest.approx(1.25e-2)  # at the paper's 64 images
    assert (s.max_epochs, s.warmup_epochs, s.optimizer.weight_decay) == (10, 5, 0.01)
    assert s.schedulers[1].eta_min == pytest.approx(6.25e-7)
    assert [t._target_.rsplit(".", 1)[1] for t in cfg.pipeline.train] == ["Resize"]  # no augmentation


def test_paper_phase2_recipe():
    cfg = _cfg("edgesam/distill_phase2_sa1b")
    m = cfg.model
    assert m._target_ == "edgesam.distill.PromptDistiller" and OmegaConf.is_missing(m, "student_checkpoint")
    assert (m.max_per_image, m.decode_iters, m.points_per_iter, m.point_masks, m.box_masks) == (16, 2, 1, 4, 1)
    assert list(m.prompt_types) == ["box", "point"] and m.iter_on_box and list(m.student_keys) == ["image_encoder."]
    assert (cfg.loss.bce_weight, cfg.loss.dice_weight) == (5.0, 5.0)
    s = cfg.schedule
    assert s.lr * 16 / s.base_batch_size == pytest.approx(1e-4)
    assert (s.max_epochs, s.optimizer.weight_decay, s.clip_grad.max_norm) == (5, 0.05, 0.01)
    assert len(s.schedulers) == 1 and s.schedulers[0].eta_min == pytest.approx(1e-5)


@pytest.mark.parametrize("experiment", ["edgesam/shapes_teacher", "edgesam/shapes_phase1", "edgesam/shapes_phase2"])
def test_shapes_experiments_build(experiment, tmp_path):
    import torch

    from edgesam.distill import SamPromptTrainer

    ckpt = tmp_path / "teacher.pth"
    teacher = instantiate(_cfg("edgesam/shapes_teacher", "pipeline.img_size=64").model, _convert_="partial")
    assert isinstance(teacher, SamPromptTrainer)
    torch.save({"state_dict": teacher.state_dict()}, ckpt)
    phase1 = instantiate(_cfg("edgesam/shapes_phase1", "pipeline.img_size=64",
                              f"model.teacher.checkpoint={ckpt}").model, _convert_="partial")
    torch.save({"state_dict": phase1.state_dict()}, tmp_path / "p1.pth")
    extra = {"edgesam/shapes_teacher": [], "edgesam/shapes_phase1": [f"model.teacher.checkpoint={ckpt}"],
             "edgesam/shapes_phase2": [f"model.teacher.checkpoint={ckpt}",
                                       f"model.student_checkpoint={tmp_path / 'p1.pth'}"]}[experiment]
    cfg = _cfg(experiment, "pipeline.img_size=64", *extra)
    model = instantiate(cfg.model, _convert_="partial")
    if experiment != "edgesam/shapes_teacher":
        for k, v in teacher.sam.state_dict().items():  # the teacher is the trained one
            assert torch.equal(model.teacher.sam.state_dict()[k], v)
