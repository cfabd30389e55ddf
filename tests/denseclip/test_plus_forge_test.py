"""forge-test end to end on the synthetic colour split: MaskCLIP through the shared runner (the CLIP file as
checkpoint), the semseg metric, and the ImageNet-C corruption option."""

from __future__ import annotations

import json

import pytest
import torch
from open_clip.model import CLIP

from denseclip.clip_loading import save_clip
from forge.data.semseg.synthetic import write_semantic_split


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dc")
    torch.manual_seed(0)
    clip = CLIP(embed_dim=32, vision_cfg=dict(layers=[1, 1, 1, 1], width=8, image_size=64, head_width=16),
                text_cfg=dict(context_length=8, vocab_size=49408, width=32, heads=2, layers=1))
    ckpt = tmp / "clip.pt"
    save_clip(clip, str(ckpt))
    root = write_semantic_split(str(tmp / "split"), 6, size=64, seed=3)
    return str(ckpt), root, tmp


def _forge_test(ckpt, root, work, extra=()):
    from forge.cli.test import run_test
    from tests.forge.helpers import compose_cfg

    cfg = compose_cfg(["experiment=denseclip/maskclip_colour_shapes", f"dataset.root={root}",
                       f"model.maskclip.clip_path={ckpt}", f"checkpoint={ckpt}", f"work_dir={work}",
                       "runtime.device=cpu", "schedule.num_workers=0", "runtime.vis.tensorboard=false",
                       f"+env_cache={work}", *extra], "test")
    return run_test(cfg)


def test_forge_test_maskclip_and_corruption(setup, monkeypatch):
    from denseclip.segmentor import MaskCLIPSegmentor

    ckpt, root, tmp = setup
    monkeypatch.setenv("DENSECLIP_CACHE", str(tmp / "cache"))
    seen = []  # the pixels the model is fed, per run
    forward = MaskCLIPSegmentor.forward

    def spy(self, inputs, data_samples=None, mode="tensor"):
        seen.append(inputs.float().clone())
        return forward(self, inputs, data_samples, mode)

    monkeypatch.setattr(MaskCLIPSegmentor, "forward", spy)
    clean = _forge_test(ckpt, root, tmp / "clean")
    assert set(clean) >= {"semseg/mIoU", "semseg/aAcc", "semseg/mAcc"}
    assert 0.0 <= clean["semseg/mIoU"] <= 1.0
    with open(tmp / "clean" / "test_metrics.json") as f:
        assert json.load(f)["semseg/mIoU"] == pytest.approx(clean["semseg/mIoU"])
    again = _forge_test(ckpt, root, tmp / "again")
    assert again == pytest.approx(clean)  # deterministic, text classifier from the cache
    n = len(seen)
    assert n == 12  # 6 images, one per step, twice
    torch.testing.assert_close(torch.cat(seen[:6]), torch.cat(seen[6:]))
    noisy = _forge_test(ckpt, root, tmp / "noisy", ["corruption.name=impulse_noise", "corruption.severity=5"])
    assert 0.0 <= noisy["semseg/mIoU"] <= 1.0
    clean_px, noisy_px = torch.cat(seen[:6]), torch.cat(seen[12:])
    extreme = (lambda px: ((px == 0) | (px == 255)).float().mean())
    flipped = extreme(noisy_px) - extreme(clean_px)
    assert 0.2 < float(flipped) < 0.3  # severity 5 sets 27 % of the values to 0 or 255


def test_forge_test_rejects_another_models_file(setup, tmp_path, monkeypatch):
    from forge.config import ConfigError

    ckpt, root, tmp = setup
    monkeypatch.setenv("DENSECLIP_CACHE", str(tmp / "cache"))
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"backbone.w": torch.zeros(1)}}, other)
    with pytest.raises(ConfigError, match="neither CLIP weights"):
        _forge_test(ckpt, root, tmp_path / "w", [f"checkpoint={other}"])


def test_corruption_table_script(setup, tmp_path, monkeypatch):
    import importlib.util

    ckpt, root, tmp = setup
    monkeypatch.setenv("DENSECLIP_CACHE", str(tmp / "cache"))
    spec = importlib.util.spec_from_file_location("dc_corruption", "benchmarks/denseclip_corruption.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    md = tmp_path / "bench.md"
    text = mod.main(["--experiment", "denseclip/maskclip_colour_shapes", "--checkpoint", ckpt,
                     "--set", f"dataset.root={root}", "--set", f"model.maskclip.clip_path={ckpt}",
                     "--set", "runtime.device=cpu", "--set", "schedule.num_workers=0",
                     "--corruptions", "contrast,jpeg_compression", "--severities", "1,5",
                     "--work-root", str(tmp_path / "w"), "--md", str(md)])
    lines = text.splitlines()
    assert lines[0] == "| corruption | severity 1 | severity 5 | mean |"
    assert lines[3].startswith("| contrast | ") and lines[4].startswith("| jpeg_compression | ")
    assert "<!-- denseclip-corruption:begin -->" in md.read_text() and "| none (clean) |" in md.read_text()
    for s in (1, 5):
        assert (tmp_path / "w" / f"contrast{s}" / "test_metrics.json").is_file()
