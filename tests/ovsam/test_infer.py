"""forge-infer ovsam on seeded small models saved to tmp."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from denseclip import build_clip, save_clip
from forge.ops import rle_to_mask
from ovsam import CLIP2SAM, CLIPResNetBackbone, preprocess, vocabulary_classifier
from ovsam.checkpoint import sam2clip_config
from ovsam.infer import main

from .tiny import INPUT, TINY_RN


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ovsam_infer")
    torch.manual_seed(0)
    clip = build_clip(TINY_RN)
    save_clip(clip, str(d / "clip.pt"))
    model = CLIP2SAM(CLIPResNetBackbone(clip.visual), embed_dim=64, input_size=INPUT,
                     sam2clip_kwargs=dict(num_heads=4, depth=2, global_attn_indexes=(1,))).eval()
    torch.save(model.state_dict(), d / "c2s.pth")
    # and a file with only the trainable parts + a SAM2CLIP file + a SAM file, as the official releases
    sd = model.state_dict()
    torch.save({k: v for k, v in sd.items() if k.startswith(("fpn_neck.", "mask_decoder."))}, d / "part.pth")
    torch.save({"state_dict": {"neck_student." + k[5:]: v for k, v in sd.items() if k.startswith("neck.")}},
               d / "s2c.pth")
    torch.save({"prompt_encoder." + k[3:]: v for k, v in sd.items() if k.startswith("pe.")}, d / "sam.pth")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    Image.fromarray(img).save(d / "img.png")
    return d, model, clip, img


def test_config_from_shapes(files):
    _, model, _, _ = files
    assert sam2clip_config(model.state_dict()) == dict(embed_dim=64, input_size=256, depth=2, num_heads=4,
                                                       global_attn_indexes=(1,), window_size=14)


@pytest.mark.parametrize("layout", ["full", "parts"])
def test_box_prompt_json_matches_predict(files, tmp_path, layout, capsys):
    d, model, clip, img = files
    extra = ["--checkpoint", str(d / "c2s.pth")] if layout == "full" else \
        ["--checkpoint", str(d / "part.pth"), "--sam2clip", str(d / "s2c.pth"), "--sam", str(d / "sam.pth")]
    vocab = "red square,blue circle|blue disc,green triangle,cat,dog,sofa"
    rc = main(["%s" % (d / "img.png"), "--clip", str(d / "clip.pt"), *extra, "--box", "10,20,110,100",
               "--box", "0,0,200,120", "--vocab", vocab, "--templates", "single", "--cache-dir", str(tmp_path),
               "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert len(res) == 2 and all(len(r["labels"]) == 5 for r in res)
    assert Image.open(tmp_path / "o.png").size == (200, 120)
    assert rle_to_mask([r["segmentation"] for r in res]).shape == (2, 120, 200)
    # the same numbers as the model called directly (boxes scaled by 256 / 200)
    classes = [["red square"], ["blue circle", "blue disc"], ["green triangle"], ["cat"], ["dog"], ["sofa"]]
    cls = vocabulary_classifier(clip, classes, "single", cache=False)
    x, _ = preprocess(img, INPUT)
    pred = model.predict(x, cls, boxes=torch.tensor([[10, 20, 110, 100], [0, 0, 200, 120.]]) * 1.28)
    p = pred.scores.softmax(-1)[:, :-1]
    names = ["red square", "blue circle", "green triangle", "cat", "dog", "sofa"]
    for r, row in zip(res, p):
        s, i = row.topk(5)
        assert [lab["name"] for lab in r["labels"]] == [names[j] for j in i]
        np.testing.assert_allclose([lab["score"] for lab in r["labels"]], s.numpy(), rtol=1e-4)


def test_point_prompt(files, tmp_path):
    d, *_ = files
    rc = main([str(d / "img.png"), "--clip", str(d / "clip.pt"), "--checkpoint", str(d / "c2s.pth"),
               "--point", "50,60", "--vocab", "a,b", "--templates", "single", "--cache-dir", str(tmp_path),
               "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res[0]["prompt"] == {"point": [50.0, 60.0]} and len(res[0]["labels"]) == 2


@pytest.mark.parametrize("change, message", [
    (["--box", "10,20,5,100"], "inverted"),
    (["--box", "10,20,500,100"], "outside"),
    (["--box", "a,b"], "not x0,y0,x1,y1"),
    (["--vocab", "cat,Cat"], "repeats"),
    (["--base", "zebra"], "zebra"),
    (["--checkpoint", "missing.pth"], "missing.pth"),
    (["--clip", "missing_clip.pt"], "missing_clip.pt"),
    (["--image"], "cannot read image"),
])
def test_errors_exit_2_with_one_line(files, tmp_path, capsys, change, message):
    d, *_ = files
    args = {"image": str(d / "img.png"), "--clip": str(d / "clip.pt"), "--checkpoint": str(d / "c2s.pth"),
            "--box": "10,20,110,100", "--vocab": "cat,dog", "--out": str(tmp_path / "o.png")}
    if change == ["--image"]:
        args["image"] = str(tmp_path / "nope.png")
    else:
        args[change[0]] = change[1]
    argv = [args.pop("image")] + [x for k, v in args.items() for x in (k, v)]
    argv += ["--templates", "single", "--cache-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_partial_checkpoint_needs_sam2clip(files, tmp_path, capsys):
    d, *_ = files
    with pytest.raises(SystemExit):
        main([str(d / "img.png"), "--clip", str(d / "clip.pt"), "--checkpoint", str(d / "part.pth"), "--box",
              "1,1,50,50", "--vocab", "a,b", "--out", str(tmp_path / "o.png")])
    assert "--sam2clip" in capsys.readouterr().err
