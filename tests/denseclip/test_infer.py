"""``forge-infer denseclip`` on a seeded small open_clip model saved to a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from denseclip.clip_loading import build_clip, load_clip
from denseclip.infer import main, resize_short_side, segment
from denseclip.maskclip import MaskCLIP
from denseclip.overlay import class_colors, draw_segmentation
from denseclip.text_classifier import build_text_classifier
from tests.denseclip.seeded import TINY_RN, TINY_VIT, seeded_state_dict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("denseclip_infer")
    for name, cfg in (("vit", TINY_VIT), ("rn", TINY_RN)):
        model = build_clip(cfg, quick_gelu=True)
        model.load_state_dict(seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, 1))
        torch.save(model.state_dict(), d / f"{name}.pt")
    image = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    Image.fromarray(image).save(d / "img.png")
    return d


def run(files, tmp_path, *extra):
    args = [str(files / "img.png"), "--classes", "sky,tree,road", "--checkpoint", str(files / "vit.pt"),
            "--out", str(tmp_path / "out.png"), "--cache-dir", str(tmp_path / "cache"), *extra]
    return main(args)


def test_overlay_and_labels(files, tmp_path, capsys):
    assert run(files, tmp_path, "--labels", str(tmp_path / "labels.png"), "--short-side", "64",
               "--key-smoothing", "--prompt-denoising") == 0
    labels = Image.open(tmp_path / "labels.png")
    assert labels.mode == "L" and labels.size == (130, 90)  # the input image's resolution
    lab = np.asarray(labels)
    assert lab.max() < 3
    overlay = np.asarray(Image.open(tmp_path / "out.png"))
    assert overlay.shape[1] == 130 and overlay.shape[0] > 90  # image + legend strip
    np.testing.assert_array_equal(overlay[:90], draw_segmentation(np.asarray(Image.open(files / "img.png")), lab,
                                                                  ["sky", "tree", "road"], legend=False))
    out = capsys.readouterr().out
    assert "3 classes" in out and "KS+PD" in out and "85 templates" in out


def test_labels_are_the_api_prediction(files, tmp_path):
    """The CLI's labels equal MaskCLIP's scores at the resized image, resized back and argmaxed."""
    assert run(files, tmp_path, "--labels", str(tmp_path / "l.png"), "--short-side", "48", "--templates",
               "single") == 0
    clip = load_clip(None, str(files / "vit.pt"))
    net = MaskCLIP(clip, build_text_classifier(clip, ["sky", "tree", "road"], "single", cache=False))
    image = np.asarray(Image.open(files / "img.png"))
    small = resize_short_side(image, 48)
    assert small.shape[:2] == (48, 69)
    x = torch.from_numpy(small.copy()).permute(2, 0, 1)[None].float()
    scores = torch.nn.functional.interpolate(net(x), size=(90, 130), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "l.png")), scores.argmax(1)[0].numpy())


def test_short_side_zero_keeps_the_image(files, tmp_path):
    image = np.asarray(Image.open(files / "img.png"))
    assert resize_short_side(image, 0) is image
    assert run(files, tmp_path, "--short-side", "0", "--labels", str(tmp_path / "l.png")) == 0
    clip = load_clip(None, str(files / "vit.pt"))
    net = MaskCLIP(clip, build_text_classifier(clip, ["sky", "tree", "road"], "paper", cache=False))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "l.png")), segment(net, image, 0))


def test_resnet_slide_and_variant_options(files, tmp_path, capsys):
    args = [str(files / "img.png"), "--classes", "a,b", "--checkpoint", str(files / "rn.pt"), "--out",
            str(tmp_path / "o.png"), "--cache-dir", str(tmp_path / "c"), "--short-side", "64", "--slide", "64,32",
            "--variant", "sclip", "--labels", str(tmp_path / "l.png")]
    assert main(args) == 0
    assert "needs a ViT CLIP" in capsys.readouterr().out
    assert run(files, tmp_path, "--variant", "clearclip", "--protocol", "clip", "--short-side", "64") == 0


def test_labels_beyond_256_classes_are_16_bit(tmp_path):
    from denseclip.infer import write_labels

    lab = np.array([[0, 300], [299, 1]])
    write_labels(lab, str(tmp_path / "l.png"), 301)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "l.png")), lab)


@pytest.mark.parametrize("change,message", [
    (("--checkpoint", "missing.pt"), "missing.pt' not found (expected CLIP weights"),
    (("--model", "RN50"), "holds a custom ViT"),
    (("--classes", "sky,,road"), "empty name"),
    (("--templates", "nope.txt"), "template file 'nope.txt' not found"),
    (("--short-side", "-1"), "--short-side must be >= 0"),
    (("--slide", "224"), "CROP,STRIDE"),
    (("--out", "/nonexistent/dir/o.png"), "cannot write output"),
])
def test_errors_exit_2_with_one_line(files, tmp_path, capsys, change, message):
    args = [str(files / "img.png"), "--classes", "sky,tree", "--checkpoint", str(files / "vit.pt"), "--out",
            str(tmp_path / "o.png"), "--cache-dir", str(tmp_path / "c"), "--short-side", "32"]
    i = args.index(change[0]) if change[0] in args else None
    if i is None:
        args += list(change)
    else:
        args[i + 1] = change[1]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: forge-infer denseclip: ") and message in err


def test_missing_or_bad_image(files, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"no image")
    for path, message in ((tmp_path / "none.png", "not found"), (tmp_path / "bad.png", "cannot read image")):
        with pytest.raises(SystemExit) as exc:
            main([str(path), "--classes", "a", "--checkpoint", str(files / "vit.pt"), "--out", str(tmp_path / "o")])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_overlay_colors_and_legend():
    cols = class_colors(171)
    assert len({tuple(c) for c in cols}) == 171  # COCO-Stuff: no repeated colour
    image = np.zeros((20, 40, 3), np.uint8)
    labels = np.zeros((20, 40), np.int64)
    labels[:, 30:] = 1
    out = draw_segmentation(image, labels, ["left", "right"], alpha=1.0)
    assert (out[:20, 0] == cols[0]).all() and (out[:20, 39] == cols[1]).all() and out.shape[0] > 20
    with pytest.raises(ValueError, match="outside"):
        draw_segmentation(image, labels + 1, ["left", "right"])
