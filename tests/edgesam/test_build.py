"""Full-size models against the official key/shape manifests (built on the meta device), architecture detection
and checkpoint loading errors."""

from __future__ import annotations

import logging

import pytest
import torch

from edgesam import MODEL_NAMES, CheckpointError, build_sam, detect_architecture
from edgesam.build import read_checkpoint
from tests.edgesam.official_fixtures import load_manifest

KEY_COUNTS = {"vit_b": 314, "vit_l": 482, "vit_h": 594, "mobile_sam": 439, "edge_sam": 821}


def manifest_name(name: str) -> str:
    return f"sam_{name}" if name.startswith("vit") else name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_manifest_key_for_key(name):
    with torch.device("meta"):
        model = build_sam(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = load_manifest(manifest_name(name))
    assert len(official) == KEY_COUNTS[name]
    assert sorted(set(ours) - set(official)) == [] and sorted(set(official) - set(ours)) == []
    assert ours == official
    # the official buffers that are not in the checkpoints are not in ours either
    assert "pixel_mean" not in ours and not any(k.endswith("attention_bias_idxs") for k in ours)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_detect_architecture_from_keys(name):
    state = {k: torch.empty(s, device="meta") for k, s in load_manifest(manifest_name(name)).items()}
    assert detect_architecture(state) == name


@pytest.fixture(scope="module")
def edge_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_sam("edge_sam")
    path = tmp_path_factory.mktemp("ckpt") / "edge_sam_random.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_checkpoint_architecture_recognised(edge_ckpt):
    path, model = edge_ckpt
    loaded = build_sam(None, path)
    assert isinstance(loaded.image_encoder, type(model.image_encoder))
    got = loaded.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v), k
    assert not loaded.training


def test_wrong_architecture_is_a_clear_error(edge_ckpt):
    path, _ = edge_ckpt
    with pytest.raises(CheckpointError) as err:
        build_sam("mobile_sam", path)
    msg = str(err.value)
    assert str(path) in msg and "not a mobile_sam checkpoint" in msg and "look like edge_sam" in msg
    assert "missing keys: image_encoder.patch_embed.seq.0.c.weight" in msg
    assert "unexpected keys: image_encoder.features.0.0.c.weight" in msg


def test_missing_unexpected_and_misshapen_keys(edge_ckpt, tmp_path, caplog):
    path, model = edge_ckpt
    state = read_checkpoint(path)
    key = "mask_decoder.iou_token.weight"

    cut = dict(state)
    del cut[key]
    torch.save(cut, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=rf"cut\.pth is not a edge_sam checkpoint.*1 missing keys: {key}"):
        build_sam("edge_sam", tmp_path / "cut.pth")

    bad = dict(state, **{key: torch.zeros(1, 8)})
    torch.save({"model": bad}, tmp_path / "shape.pth")  # also: a checkpoint wrapped under "model"
    with pytest.raises(CheckpointError, match=rf"1 keys of another shape: {key}: file \(1, 8\) vs model \(1, 256\)"):
        build_sam("edge_sam", tmp_path / "shape.pth")

    extra = dict(state, **{"foo.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: foo\.weight"):
        build_sam("edge_sam", tmp_path / "extra.pth")

    # EdgeSAM files may carry the region-proposal head: skipped, and each key is logged with the reason
    rpn = dict(state, **{"rpn_head.conv.weight": torch.zeros(1)})
    torch.save(rpn, tmp_path / "rpn.pth")
    with caplog.at_level(logging.WARNING, logger="edgesam.build"):
        build_sam("edge_sam", tmp_path / "rpn.pth")
    assert "ignoring rpn_head.conv.weight: optional region-proposal head" in caplog.text


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_sam(None, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*junk\.pth"):
        build_sam(None, tmp_path / "junk.pth")
    torch.save({"backbone.conv1.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: not a SAM / MobileSAM / EdgeSAM checkpoint"):
        build_sam(None, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unknown model 'vit_x'"):
        build_sam("vit_x")
    with pytest.raises(ValueError, match="needs a model name or a checkpoint"):
        build_sam()
