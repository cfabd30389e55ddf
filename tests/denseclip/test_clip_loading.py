"""CLIP loading: full-size key manifests of the official packages, tiny files written the way each saves them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from open_clip.model import CustomTextCLIP, convert_weights_to_lp

from denseclip.clip_loading import (
    CLIP_ARCHITECTURES,
    CLIPLoadError,
    build_clip,
    canonical_arch,
    clip_config_from_state_dict,
    clip_fingerprint,
    identify_architecture,
    load_clip,
    normalize_clip_keys,
    save_clip,
    wrap_clip,
)
from tests.denseclip.seeded import TINY_RN, TINY_VIT, seeded_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "denseclip"


def _manifest(name: str) -> dict:
    with gzip.open(FIXTURES / f"manifest_{name}.json.gz", "rt") as f:
        return json.load(f)["models"]


def _meta_state(keys: dict) -> dict[str, torch.Tensor]:
    dtypes = {"float16": torch.float16, "float32": torch.float32, "int64": torch.int64}
    return {k: torch.empty(shape, dtype=dtypes[dt], device="meta") for k, (shape, dt) in keys.items()}


@pytest.fixture(scope="module")
def manifests():
    return _manifest("openai"), _manifest("open_clip")


def seeded(cfg, seed=0, quick_gelu=True):
    model = build_clip(cfg, quick_gelu=quick_gelu)
    model.load_state_dict(seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed))
    return model


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


# -------------------------------------------------------------------------------------------- full-size manifests
@pytest.mark.parametrize("arch", CLIP_ARCHITECTURES)
def test_official_keys_are_recognised(arch, manifests):
    openai, open_clip = manifests
    state = normalize_clip_keys(_meta_state(openai[arch]))
    cfg = clip_config_from_state_dict(state)
    assert identify_architecture(cfg) == arch
    # open_clip builds exactly the keys and shapes of OpenAI's model (what makes a strict load possible)
    assert {k: v[0] for k, v in openai[arch].items()} == {k: v[0] for k, v in open_clip[arch].items()}
    ours = build_clip(arch, device="meta").state_dict()
    assert {k: list(v.shape) for k, v in ours.items()} == {k: v[0] for k, v in openai[arch].items()}
    # the inferred config builds the same shapes too (what "custom" files rely on)
    inferred = build_clip(cfg, device="meta").state_dict()
    assert {k: list(v.shape) for k, v in inferred.items()} == {k: v[0] for k, v in openai[arch].items()}


def test_released_files_are_half_precision(manifests):
    openai, _ = manifests
    keys = openai["ViT-B-16"]
    assert keys["visual.conv1.weight"][1] == "float16" and keys["visual.proj"][1] == "float16"
    assert keys["visual.ln_post.weight"][1] == "float32"


def test_wrong_full_size_architecture_is_named(manifests, tmp_path):
    openai, _ = manifests
    path = tmp_path / "RN50.pt"
    torch.save(_meta_state(openai["RN50"]), path)  # shapes only: the check happens before anything is built
    with pytest.raises(CLIPLoadError, match=r"holds RN50 .* not the expected RN101"):
        load_clip("RN101", str(path))
    with pytest.raises(CLIPLoadError, match="not the expected ViT-B-16"):
        load_clip("ViT-B/16", str(path))


def test_names_and_aliases():
    assert canonical_arch("ViT-B/16") == "ViT-B-16" and canonical_arch("ViT14") == "ViT-L-14"
    with pytest.raises(CLIPLoadError, match="RN50x16"):
        canonical_arch("RN200")


# ------------------------------------------------------------------------------- tiny files, each producer's way
def _torchscript_archive(model, half: set[str], path):
    """As OpenAI's releases: a traced CLIP, float16 weights (the ``half`` names), plus three scalar buffers that
    OpenAI's build_model drops."""
    for name, value in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, name):  # open_clip keeps two of them as plain ints
            delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    image = torch.zeros(1, 3, 64, 64)
    text = torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace_module(model, {"encode_image": (image,), "encode_text": (text,)}, check_trace=False)
    with torch.no_grad():
        for name, p in traced.named_parameters():
            if name in half:
                p.data = p.data.half()
    torch.jit.save(traced, str(path))


def test_torchscript_archive(tmp_path):
    model = seeded(TINY_VIT, seed=3)
    ref = seeded(TINY_VIT, seed=3)
    convert_weights_to_lp(ref)  # what the archive stores: OpenAI's casting rule
    half = {k for k, v in ref.state_dict().items() if v.dtype == torch.float16}
    assert "visual.conv1.weight" in half and "visual.proj" in half
    _torchscript_archive(model, half, tmp_path / "ViT.pt")
    assert torch.jit.load(str(tmp_path / "ViT.pt")).state_dict()["visual.proj"].dtype == torch.float16
    loaded = load_clip(None, str(tmp_path / "ViT.pt"))
    assert loaded.source == "torchscript" and loaded.quick_gelu and loaded.arch == "custom" and loaded.is_vit
    assert same_weights(loaded.model, ref.float())
    assert loaded.model.visual.conv1.weight.dtype == torch.float32


@pytest.mark.parametrize("cfg", [TINY_VIT, TINY_RN], ids=["vit", "rn"])
def test_openai_state_dict(cfg, tmp_path):
    model = seeded(cfg, seed=4)
    torch.save(model.state_dict(), tmp_path / "clip.pt")
    loaded = load_clip(None, str(tmp_path / "clip.pt"))
    assert loaded.source == "state_dict" and loaded.quick_gelu  # OpenAI's weights use QuickGELU
    assert same_weights(loaded.model, model)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(loaded.model.encode_image(x), model.encode_image(x))


def test_open_clip_training_checkpoint_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = seeded(TINY_VIT, seed=5, quick_gelu=False)
    ckpt = {"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}
    torch.save(ckpt, tmp_path / "epoch_3.pt")
    loaded = load_clip(None, str(tmp_path / "epoch_3.pt"))
    assert loaded.source == "open_clip" and not loaded.quick_gelu and same_weights(loaded.model, model)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "clip.safetensors"))
    loaded = load_clip(None, str(tmp_path / "clip.safetensors"))
    assert loaded.source == "open_clip" and same_weights(loaded.model, model)


def test_custom_text_clip_is_folded(tmp_path):
    model = CustomTextCLIP(**TINY_VIT).eval()
    model.load_state_dict(seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, 6))
    torch.save(model.state_dict(), tmp_path / "custom.pt")
    loaded = load_clip(None, str(tmp_path / "custom.pt"), quick_gelu=False)
    tokens = torch.randint(1, 1000, (2, 77))
    torch.testing.assert_close(loaded.model.encode_text(tokens), model.encode_text(tokens))


def test_save_clip_keeps_heads_and_activation(tmp_path):
    cfg = {**TINY_VIT, "vision_cfg": {**TINY_VIT["vision_cfg"], "head_width": 32}}  # 4 heads, not 128 // 64
    model = seeded(cfg, seed=7, quick_gelu=False)
    save_clip(model, str(tmp_path / "demo.pt"))
    loaded = load_clip(None, str(tmp_path / "demo.pt"))
    assert loaded.model.visual.transformer.resblocks[0].attn.num_heads == 4 and not loaded.quick_gelu
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded.model.encode_image(x), model.encode_image(x))
    torch.save(model.state_dict(), tmp_path / "bare.pt")  # without model_cfg the shapes cannot tell the heads
    bare = load_clip(None, str(tmp_path / "bare.pt"), quick_gelu=False)
    assert not torch.allclose(bare.model.encode_image(x), model.encode_image(x))
    w = wrap_clip(model)
    assert w.model_cfg["vision_cfg"]["head_width"] == 32 and w.arch == "custom" and w.source == "memory"


# ------------------------------------------------------------------------------------------------------- errors
def test_missing_file_names_expected_architecture(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*expected ViT-B-16 weights"):
        load_clip("ViT-B-16", str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="expected CLIP weights"):
        load_clip(None, str(tmp_path / "nope.pt"))


def test_bad_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CLIPLoadError, match=r"cannot read CLIP checkpoint .*junk\.pt.*expected RN50"):
        load_clip("RN50", str(tmp_path / "junk.pt"))
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CLIPLoadError, match="not a CLIP state dict: missing"):
        load_clip(None, str(tmp_path / "other.pt"))
    torch.save({"epoch": 1, "state_dict": {"a": "b"}}, tmp_path / "strs.pt")
    with pytest.raises(CLIPLoadError, match="no state dict of tensors"):
        load_clip(None, str(tmp_path / "strs.pt"))
    model = seeded(TINY_VIT)
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(CLIPLoadError, match=r"holds a custom ViT \(width 128.* not the expected RN50"):
        load_clip("RN50", str(tmp_path / "tiny.pt"))
    wrong = {**TINY_VIT, "vision_cfg": {**TINY_VIT["vision_cfg"], "layers": 3}}
    with pytest.raises(CLIPLoadError, match=r"does not fit .*missing"):
        load_clip(None, str(tmp_path / "tiny.pt"), model_cfg=wrong)


def test_fingerprint_follows_the_text_tower():
    a = seeded(TINY_VIT, seed=0)
    b = seeded(TINY_VIT, seed=0)
    assert clip_fingerprint(a) == clip_fingerprint(b)
    with torch.no_grad():
        b.visual.proj.add_(1.0)  # the image tower does not change text embeddings
    assert clip_fingerprint(a) == clip_fingerprint(b)
    with torch.no_grad():
        b.text_projection.add_(1e-3)
    assert clip_fingerprint(a) != clip_fingerprint(b)
    assert clip_fingerprint(seeded(TINY_VIT, seed=0, quick_gelu=False)) != clip_fingerprint(a)
