"""RepViT-M1 ImageNet classification checkpoints (``repvit_m1_distill_300.pth``) load into EdgeSAM's encoder: keys and
shapes against the manifest of the official ``repvit_m1(distillation=True)``, outputs against the official model's
on seeded weights (fixtures: tests/fixtures/edgesam/generate_repvit_cls.py, README "RepViT-M1 classification")."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesam.rep_vit import RepViT
from edgesam.repvit_cls import convert_classification_state, load_classification_init

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "edgesam"


def _gen():
    spec = importlib.util.spec_from_file_location("generate_repvit_cls", FIX / "generate_repvit_cls.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _manifest() -> dict[str, list[int]]:
    return json.loads((FIX / "repvit_m1_cls.manifest.json").read_text())


def _meta_encoder() -> RepViT:
    with torch.device("meta"):
        return RepViT(img_size=1024)


def test_manifest_maps_key_for_key():
    manifest = _manifest()
    state = {k: torch.empty(s, device="meta") for k, s in manifest.items()}
    enc = _meta_encoder().state_dict()
    tensors, ignored, kept = convert_classification_state(state, enc)
    assert len(manifest) == 690 and len(tensors) == 676
    assert sorted(tensors) == sorted(k for k in manifest if k.startswith("features."))
    assert all(tensors[k].shape == enc[k].shape for k in tensors)
    assert len(ignored) == 14 and all(k.startswith("classifier.") for k in ignored)
    assert sorted(kept) == sorted(k for k in enc if not k.startswith("features."))
    assert len(kept) == 8 and {k.split(".")[0] for k in kept} == {"fuse_stage2", "fuse_stage3", "neck"}


def test_bad_files_are_errors_naming_the_keys():
    manifest = _manifest()
    enc = _meta_encoder().state_dict()
    state = {k: torch.empty(s, device="meta") for k, s in manifest.items()}
    missing = dict(state)
    del missing["features.5.token_mixer.0.conv.c.weight"]
    with pytest.raises(ValueError, match=r"f\.pth.*1 missing keys \['features\.5\.token_mixer\.0\.conv\.c\.weight"):
        convert_classification_state(missing, enc, "f.pth")
    wrong = dict(state, **{"features.0.0.c.weight": torch.empty(8, 3, 3, 3, device="meta")})
    with pytest.raises(ValueError, match=r"1 of another shape \['features\.0\.0\.c\.weight: \(8, 3, 3, 3\)"):
        convert_classification_state(wrong, enc, "f.pth")
    extra = dict(state, **{"head.weight": torch.empty(3, device="meta")})
    with pytest.raises(ValueError, match=r"1 unexpected keys \['head\.weight'\]"):
        convert_classification_state(extra, enc, "f.pth")
    sam_file = {f"image_encoder.{k}": v for k, v in enc.items()}
    with pytest.raises(ValueError, match="an EdgeSAM / SAM file"):
        convert_classification_state(sam_file, enc, "edge_sam.pth")


def test_seeded_official_weights_give_the_official_features(tmp_path):
    """A file written as RepViT's main.py writes it (``model`` + ``args`` Namespace + optimiser) loads, and our
    encoder then computes the official model's stage outputs."""
    gen = _gen()
    state = gen.seeded_state_dict(_manifest())
    path = tmp_path / "repvit_m1_distill_300.pth"
    torch.save({"model": state, "args": argparse.Namespace(model="repvit_m1"), "epoch": 299,
                "optimizer": {"state": {}, "param_groups": []}}, path)
    enc = RepViT(img_size=1024)
    neck_before = enc.neck[0].weight.clone()
    report = load_classification_init(enc, str(path))
    assert len(report["loaded"]) == 676 and len(report["ignored"]) == 14 and len(report["initialised"]) == 8
    assert torch.equal(enc.neck[0].weight, neck_before)  # not in the file: untouched
    ref = np.load(FIX / "repvit_m1_cls.npz")
    with torch.no_grad():
        out = enc.eval().forward_features(gen.fixed_input())
    for name in ("stage2", "stage3"):
        assert out[name].shape == ref[name].shape
        np.testing.assert_allclose(out[name].numpy(), ref[name], atol=1e-4, rtol=0)


def test_phase1_config_uses_the_classification_init(tmp_path):
    from hydra import compose, initialize_config_dir

    from forge.cli.common import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("train", overrides=["experiment=edgesam/distill_phase1_sa1b"])
    assert cfg.model.encoder_init == "weights/repvit_m1_distill_300.pth"
    assert cfg.model._target_ == "edgesam.distill.EncoderDistiller"


def test_encoder_distiller_encoder_init(tmp_path):
    """``EncoderDistiller(encoder_init=...)`` loads the backbone before training (small RepViT + small teacher);
    giving a SAM-style student_checkpoint as well is refused."""
    from edgesam.distill import EncoderDistiller, Teacher, repvit_encoder, sam_model, vit_encoder

    stages = [[16, "SN"], [24, "DS"], [32, "DN"], [48, "DS"]]
    student = repvit_encoder(64, stages, out_chans=32)
    cls = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in student.state_dict().items()
           if k.startswith("features.")}
    cls["classifier.classifier.l.weight"] = torch.zeros(10, 48)
    torch.save({"model": cls}, tmp_path / "cls.pth")
    teacher_sam = sam_model(vit_encoder(64, 32, 2, 2, 4, (1,), out_chans=32), prompt_dim=32, decoder_heads=2,
                            decoder_mlp_dim=64, iou_head_hidden_dim=32)
    torch.save({"state_dict": {f"sam.{k}": v for k, v in teacher_sam.state_dict().items()}}, tmp_path / "t.pth")
    teacher = Teacher(model=sam_model(vit_encoder(64, 32, 2, 2, 4, (1,), out_chans=32), prompt_dim=32,
                                      decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32),
                      checkpoint=str(tmp_path / "t.pth"))
    model = EncoderDistiller(repvit_encoder(64, stages, out_chans=32), teacher, encoder_init=str(tmp_path / "cls.pth"))
    got = model.student.image_encoder.state_dict()
    assert all(torch.equal(got[k], v) for k, v in cls.items() if k.startswith("features."))
    with pytest.raises(ValueError, match="not both"):
        EncoderDistiller(repvit_encoder(64, stages, out_chans=32), teacher, encoder_init=str(tmp_path / "cls.pth"),
                         student_checkpoint=str(tmp_path / "t.pth"))
