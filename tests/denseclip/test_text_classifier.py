"""Text classifier: the official zeroshot_classifier (fixture), templates, averaging, on-disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.tokenizer import tokenize
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

import denseclip.text_classifier as tc
from denseclip.clip_loading import build_clip, wrap_clip
from denseclip.templates import PAPER_TEMPLATES, SCENE_TEMPLATES, check_template, resolve_templates
from denseclip.text_classifier import build_text_classifier, cache_key, parse_class_names
from tests.denseclip.seeded import TINY_RN, TINY_VIT, seeded_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "denseclip"


def seeded(cfg, seed):
    model = build_clip(cfg, quick_gelu=True)
    model.load_state_dict(seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed))
    return model


@pytest.fixture(scope="module")
def tiny():
    return seeded(TINY_VIT, 1)


@pytest.mark.parametrize("kind,cfg", [("vit", TINY_VIT), ("rn", TINY_RN)])
def test_matches_official_zeroshot_classifier(kind, cfg):
    with open(FIXTURES / "maskclip_official.json") as f:
        meta = json.load(f)
    ref = torch.from_numpy(np.load(FIXTURES / "maskclip_official.npz")[f"{kind}_text_embeddings"])
    assert meta["cases"][kind]["templates"] == len(PAPER_TEMPLATES) == 85
    got = build_text_classifier(seeded(cfg, meta["cases"][kind]["seed"]), meta["classes"], "paper", cache=False)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    single = build_text_classifier(seeded(cfg, meta["cases"][kind]["seed"]), meta["classes"], "single", cache=False)
    assert (single - ref).abs().max() > 1e-2  # the templates matter: the fixture would see a wrong list


def test_paper_templates():
    assert PAPER_TEMPLATES[:80] == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert PAPER_TEMPLATES[80:] == SCENE_TEMPLATES and len(set(PAPER_TEMPLATES)) == 85
    assert resolve_templates("single") == ["a photo of a {}."]
    assert len(resolve_templates("imagenet")) == 80


def test_template_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# my prompts\na {} in the wild.\n\n  a sketch of a {}.  \n")
    assert resolve_templates(str(path)) == ["a {} in the wild.", "a sketch of a {}."]
    path.write_text("a photo.\n")
    with pytest.raises(ValueError, match=r"t\.txt:1: template 'a photo\.' must contain"):
        resolve_templates(str(path))
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no template"):
        resolve_templates(str(path))
    with pytest.raises(FileNotFoundError, match="paper, imagenet, single"):
        resolve_templates(str(tmp_path / "missing.txt"))
    for bad in ("{} and {}", "a {0} {1}", "a {name}"):
        with pytest.raises(ValueError):
            check_template(bad)


def test_per_template_normalise_average_renormalise(tiny):
    templates = ["a {}.", "the {}!"]
    got = build_text_classifier(tiny, ["cat", "dog"], templates, cache=False)
    with torch.no_grad():
        rows = []
        for name in ("cat", "dog"):
            e = tiny.encode_text(tokenize([t.format(name) for t in templates]))
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(dim=0)
            rows.append(m / m.norm())
    torch.testing.assert_close(got, torch.stack(rows))
    assert not torch.allclose(got, F.normalize(torch.stack([  # averaging unnormalised embeddings differs
        tiny.encode_text(tokenize([t.format(n) for t in templates])).mean(0) for n in ("cat", "dog")]), dim=-1))


def test_cache_hit_and_miss(tiny, tmp_path, monkeypatch):
    calls = []
    real = tc.encode_class_names
    monkeypatch.setattr(tc, "encode_class_names", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = wrap_clip(tiny)
    first = build_text_classifier(loaded, ["sky", "road"], "single", cache_dir=tmp_path)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.pt"))) == 1
    again = build_text_classifier(loaded, ["sky", "road"], "single", cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(first, again)  # hit: nothing encoded
    build_text_classifier(loaded, ["road", "sky"], "single", cache_dir=tmp_path)  # class order is part of the key
    build_text_classifier(loaded, ["sky", "road"], ["a {}."], cache_dir=tmp_path)  # so are the templates
    other = seeded(TINY_VIT, 2)  # and the weights
    build_text_classifier(other, ["sky", "road"], "single", cache_dir=tmp_path)
    assert len(calls) == 4 and len(list(tmp_path.glob("*.pt"))) == 4
    build_text_classifier(loaded, ["sky", "road"], "single", cache=False)
    assert len(calls) == 5 and len(list(tmp_path.glob("*.pt"))) == 4
    for f in tmp_path.glob("*.pt"):  # a corrupt cache file is recomputed and rewritten
        f.write_bytes(b"garbage")
    fixed = build_text_classifier(loaded, ["sky", "road"], "single", cache_dir=tmp_path)
    assert len(calls) == 6 and torch.equal(fixed, first)
    build_text_classifier(loaded, ["sky", "road"], "single", cache_dir=tmp_path)
    assert len(calls) == 6  # the rewritten file is a hit again


def test_cache_dir_from_environment(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DENSECLIP_CACHE", str(tmp_path / "env"))
    build_text_classifier(tiny, ["sky"], "single")
    assert len(list((tmp_path / "env").glob("*.pt"))) == 1


def test_cache_key():
    assert cache_key("w", ["a", "b"], ["{}"]) == cache_key("w", ("a", "b"), ("{}",))
    assert len({cache_key("w", ["a", "b"], ["{}"]), cache_key("v", ["a", "b"], ["{}"]),
                cache_key("w", ["b", "a"], ["{}"]), cache_key("w", ["a", "b"], ["{}."])}) == 4


def test_class_names():
    assert parse_class_names(" sky, tree,road ") == ["sky", "tree", "road"]
    assert parse_class_names("potted plant") == ["potted plant"]
    with pytest.raises(ValueError, match="empty name"):
        parse_class_names("sky,,road")
    with pytest.raises(ValueError, match="repeats sky"):
        parse_class_names("sky,road,sky")
    with pytest.raises(ValueError, match="no class names"):
        build_text_classifier(seeded(TINY_VIT, 0), [], "single", cache=False)
