"""Run-time vocabularies: parsing, merging, the chunked cached classifier (hit, miss, changed templates)."""

from __future__ import annotations

import pytest
import torch

import denseclip.text_classifier as tc
from denseclip import build_clip, build_text_classifier
from ovsam import merge_vocabularies, read_vocabulary, vocabulary_classifier

from .tiny import TINY_RN


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return build_clip(TINY_RN)


def test_read_vocabulary(tmp_path):
    assert read_vocabulary("cat, sofa|couch ,dog") == [["cat"], ["sofa", "couch"], ["dog"]]
    f = tmp_path / "v.txt"
    f.write_text("# comment\nred square\n\nblue circle|blue disc\n", encoding="utf-8")
    assert read_vocabulary(str(f)) == [["red square"], ["blue circle", "blue disc"]]
    f.write_text("cat\nCat\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"v.txt:2.*repeats"):
        read_vocabulary(str(f))
    with pytest.raises(ValueError, match="empty name"):
        read_vocabulary("cat,,dog")
    f.write_bytes(b"\xff\xfe\x00c")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_vocabulary(str(f))


def test_merge_vocabularies():
    v3det = [["Teddy_bear"], ["sofa"], ["zebra"]]
    lvis = [["teddy bear", "teddy"], ["couch", "sofa"], ["aerosol can"]]
    in21k = [["couch"], ["tench", "Tinca tinca"], ["zebra"]]
    merged = merge_vocabularies([v3det, lvis, in21k])
    assert merged == [["Teddy_bear", "teddy"], ["sofa", "couch"], ["zebra"], ["aerosol can"],
                      ["tench", "Tinca tinca"]]
    # a class naming two earlier ones folds them together
    assert merge_vocabularies([[["a"], ["b"]], [["a", "b"]]]) == [["a", "b"]]


def test_classifier_prototypes_and_padding(clip, tmp_path):
    classes = [["red square", "crimson square"], ["blue circle"]]
    out = vocabulary_classifier(clip, classes, "single", cache_dir=tmp_path, chunk=2)
    flat = build_text_classifier(clip, ["red square", "crimson square", "blue circle"], "single", cache=False)
    assert out.shape == (2, 2, 32)
    torch.testing.assert_close(out[0], flat[:2])
    torch.testing.assert_close(out[1, 0], flat[2])
    torch.testing.assert_close(out[1, 1], flat[2])   # padded with its first synonym


def test_cache_hit_miss_and_changed_templates(clip, tmp_path, monkeypatch):
    calls = []
    real = tc.encode_class_names

    def counting(model, names, templates, **kw):
        calls.append((tuple(names), tuple(templates)))
        return real(model, names, templates, **kw)

    monkeypatch.setattr(tc, "encode_class_names", counting)
    classes = [["cat"], ["dog"], ["sofa", "couch"]]
    a = vocabulary_classifier(clip, classes, "single", cache_dir=tmp_path, chunk=2)
    assert len(calls) == 2                      # miss: two chunks encoded
    b = vocabulary_classifier(clip, classes, "single", cache_dir=tmp_path, chunk=2)
    assert len(calls) == 2                      # hit: nothing encoded
    torch.testing.assert_close(a, b)
    c = vocabulary_classifier(clip, classes, ["a drawing of a {}.", "a {} on a table."], cache_dir=tmp_path, chunk=2)
    assert len(calls) == 4                      # changed templates: encoded again
    assert not torch.allclose(a, c)


def test_twenty_thousand_names_in_bounded_chunks(clip, tmp_path, monkeypatch):
    sizes = []
    real = tc.encode_class_names

    def counting(model, names, templates, **kw):
        sizes.append(len(names))
        return real(model, names, templates, **kw)

    monkeypatch.setattr(tc, "encode_class_names", counting)
    classes = [[f"thing {i}"] for i in range(20_500)]
    out = vocabulary_classifier(clip, classes, "single", cache=False, chunk=4096, batch_size=1024)
    assert out.shape == (20_500, 1, 32)
    assert max(sizes) == 4096 and sum(sizes) == 20_500
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(20_500, 1))
