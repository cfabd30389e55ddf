"""The command-line side that every ``forge-infer <paper>`` shares: one-line exit-2 errors naming the file, image
reading, output paths, and the run's own val pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from forge.inference import LOAD_ERRORS, InferCommand, output_names, output_paths, val_preprocess

CLI = InferCommand("forge-infer demo")


def _exit_line(capsys, call, *args, **kwargs) -> str:
    """The stderr of ``call(*args, **kwargs)``, which must exit with status 2 printing exactly one line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        call(*args, **kwargs)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("error: forge-infer demo: "), err
    return err.strip()


def test_fail_prints_one_line_and_exits_2(capsys):
    assert _exit_line(capsys, CLI.fail, "bad  thing 'x.png'") == "error: forge-infer demo: bad  thing 'x.png'"
    squash = InferCommand("forge-infer demo", squash_whitespace=True)
    assert _exit_line(capsys, squash.fail, "bad  thing\n  here") == "error: forge-infer demo: bad thing here"


def test_exits_on_prefixes_unless_the_file_is_named(capsys):
    def raising(err: BaseException, **kw):
        with CLI.exits_on(type(err), **kw):
            raise err

    plain = _exit_line(capsys, raising, ValueError("no good"), prefix="x.pth: ")
    assert plain == "error: forge-infer demo: x.pth: no good"
    named = _exit_line(capsys, raising, ValueError("x.pth is broken"), prefix="cannot: ", named="x.pth")
    assert named == "error: forge-infer demo: x.pth is broken"
    assert _exit_line(capsys, raising, KeyError("missing key 'a'")).endswith(": missing key 'a'")  # not its repr
    with pytest.raises(TypeError):  # other errors are not hidden
        with CLI.exits_on(ValueError):
            raise TypeError("a bug")


def test_loading_names_the_checkpoint_once(capsys):
    def load(err: BaseException, *errors, **kw):
        with CLI.loading("run/x.pth", *errors, **kw):
            raise err

    for err_type in LOAD_ERRORS:
        err = _exit_line(capsys, load, err_type("does not fit"))
        assert err == "error: forge-infer demo: cannot load checkpoint 'run/x.pth': does not fit"
    assert _exit_line(capsys, load, FileNotFoundError("checkpoint 'run/x.pth' does not exist")).endswith(
        ": checkpoint 'run/x.pth' does not exist")
    assert _exit_line(capsys, load, ValueError("odd"), ValueError, prefix="checkpoint").endswith(
        ": checkpoint 'run/x.pth': odd")
    with pytest.raises(OSError):  # only the errors asked for
        load(OSError("disk"), ValueError)


def test_images_are_read_as_rgb_or_named(tmp_path, capsys):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), mode="L").save(grey)
    rgb = CLI.read_image(str(grey))
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8 and (rgb[..., 0] == rgb[..., 2]).all()
    assert rgb[2, 3, 1] == 11
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(grey.read_bytes()[:40])
    for path in (tmp_path / "none.png", text, truncated):
        assert f"cannot read image {str(path)!r}: " in _exit_line(capsys, CLI.read_image, str(path))
    assert CLI.require_images([str(grey)]) is None
    err = _exit_line(capsys, CLI.require_images, [str(grey), "a.png", "b.jpg"])
    assert err.endswith("image(s) not found: a.png, b.jpg")


def test_save_image_writes_or_names_the_file(tmp_path, capsys):
    image = np.zeros((5, 6, 3), np.uint8)
    image[1, 2] = 200
    CLI.save_image(image, str(tmp_path / "a.png"))
    CLI.save_image(Image.fromarray(image), str(tmp_path / "b.png"))
    for name in ("a.png", "b.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), image)
    nowhere = str(tmp_path / "no_dir" / "c.png")
    assert f"cannot write {nowhere!r}: " in _exit_line(capsys, CLI.save_image, image, nowhere)


def test_output_paths(tmp_path):
    assert output_names(["a/x.png", "b/x.png", "x.jpg", "y.png"]) == ["x.png", "x_2.png", "x_3.png", "y.png"]
    assert output_paths(["a/x.jpg"], str(tmp_path / "one.PNG")) == [str(tmp_path / "one.PNG")]
    assert not (tmp_path / "one.PNG").exists()  # a file to write, not a folder
    out = tmp_path / "out" / "deeper"
    assert output_paths(["a/x.jpg", "b/x.jpg"], str(out)) == [str(out / "x.png"), str(out / "x_2.png")]
    assert out.is_dir()
    assert output_paths(["a/x.jpg"], str(tmp_path / "folder")) == [str(tmp_path / "folder" / "x.png")]


def test_val_preprocess_runs_the_runs_pipeline():
    cfg = OmegaConf.create({"pipeline": {"val": [{"_target_": "forge.data.transforms.Resize", "size": 16,
                                                  "keep_ratio": True}]}})
    image = np.random.default_rng(0).integers(0, 256, (8, 32, 3), dtype=np.uint8)
    x, meta = val_preprocess(cfg)(image, 7, "dir/img_7.png")
    assert x.shape[:2] == (1, 3) and max(x.shape[-2:]) == 16  # keep-ratio: the long side to 16
    assert meta.image_id == 7 and meta.file_name == "dir/img_7.png" and meta.ori_shape == (8, 32)
    assert meta.img_shape == (4, 16) and meta.extra == {}
    # the same resize by hand: PIL-free bilinear half-pixel on the uint8 image, as the transform documents
    ref = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), (4, 16),
                                          mode="bilinear", align_corners=False)
    assert (x[..., :4, :16].float() - ref).abs().max() <= 1.0  # rounded back to uint8 pixel values
    _, meta = val_preprocess(cfg, with_masks=False, extra=lambda f: {"ID": f.upper()})(image, 0, "a.png")
    assert meta.extra == {"ID": "A.PNG"}


def test_val_preprocess_needs_a_val_pipeline():
    with pytest.raises(ValueError, match=r"^the run's config has no pipeline.val$"):
        val_preprocess(OmegaConf.create({"dataset": {}}))
    old = OmegaConf.create({"dataset": {"val_pipeline": []}})
    with pytest.raises(ValueError, match=r"^run x has no pipeline.val \(it has dataset.val_pipeline"):
        val_preprocess(old, source="run x")
