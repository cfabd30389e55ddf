"""``forge-infer edgesam``: a seeded full-size EdgeSAM checkpoint written to tmp (architecture from its keys), the
results against the predictor called directly, the overlay, and one-line exit-2 errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from edgesam.build import build_sam
from edgesam.infer import main, parse_prompts
from edgesam.predictor import SamPredictor
from forge.ops import rle_to_mask

from .official_fixtures import generator, load_manifest

H, W = 120, 176


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A seeded ``edge_sam`` state dict (the official key layout, 821 keys) and the fixture image as PNG."""
    tmp = tmp_path_factory.mktemp("infer")
    ckpt = tmp / "edge_sam_seeded.pth"
    torch.save(generator().seeded_state_dict(load_manifest("edge_sam")), ckpt)
    image = tmp / "image.png"
    Image.fromarray(generator().fixture_image()).save(image)
    return ckpt, image


@pytest.fixture(scope="module")
def predictor(files):
    model = build_sam("edge_sam", files[0])
    model.image_encoder.fuse()
    p = SamPredictor(model)
    p.set_image(generator().fixture_image())
    return p


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_box_and_points_match_the_predictor(files, predictor, tmp_path, capsys):
    ckpt, image = files
    out, res = tmp_path / "o.png", tmp_path / "r.json"
    code, _, err = _run(capsys, str(image), "--checkpoint", str(ckpt), "--box", "30,20,130,95", "--point",
                        "80,60", "--point", "40,30,0", "--out", str(out), "--json", str(res))
    assert code == 0, err
    results = json.loads(res.read_text())
    masks, iou, _ = predictor.predict(np.array([[80.0, 60], [40, 30]]), np.array([1, 0]),
                                      np.array([30.0, 20, 130, 95]), multimask_output=False)
    assert len(results) == 1 and results[0]["iou_pred"] == pytest.approx(float(iou[0]), abs=1e-5)
    assert results[0]["segmentation"]["size"] == [H, W]
    got = rle_to_mask(results[0]["segmentation"]).numpy()
    assert (got != masks[0]).mean() < 1e-3
    drawn = np.asarray(Image.open(out))
    assert drawn.shape == (H, W, 3) and (drawn != generator().fixture_image()).any()


def test_lone_point_keeps_the_best_of_three_and_boxes_one_each(files, predictor, tmp_path, capsys):
    ckpt, image = files
    res = tmp_path / "r.json"
    code, _, err = _run(capsys, str(image), "--checkpoint", str(ckpt), "--model", "edge_sam", "--point", "70,50",
                        "--out", str(tmp_path / "o.png"), "--json", str(res))
    assert code == 0, err
    _, iou, _ = predictor.predict(np.array([[70.0, 50]]), np.array([1]), multimask_output=True)
    (only,) = json.loads(res.read_text())
    assert only["iou_pred"] == pytest.approx(float(iou.max()), abs=1e-5)
    code, _, err = _run(capsys, str(image), "--checkpoint", str(ckpt), "--box", "30,20,130,95", "--box",
                        "100,60,170,115", "--out", str(tmp_path / "o.png"), "--json", str(res))
    assert code == 0, err
    _, iou, _ = predictor.predict(box=np.array([[30.0, 20, 130, 95], [100, 60, 170, 115]]), multimask_output=False)
    assert [r["iou_pred"] for r in json.loads(res.read_text())] == pytest.approx(iou[:, 0].tolist(), abs=1e-5)


def test_everything_writes_generator_records(files, tmp_path, capsys):
    ckpt, image = files
    res = tmp_path / "r.json"
    code, out, err = _run(capsys, str(image), "--checkpoint", str(ckpt), "--everything", "--points-per-side", "3",
                          "--pred-iou-thresh", "0", "--stability-thresh", "0", "--out", str(tmp_path / "o.png"),
                          "--json", str(res))
    assert code == 0, err
    results = json.loads(res.read_text())
    assert results and "mask(s)" in out
    for r in results:
        assert {"segmentation", "iou_pred", "stability_score", "bbox", "crop_box"} <= set(r)
        assert r["iou_pred"] == r["predicted_iou"]


@pytest.mark.parametrize("extra, needle", [
    (["--point", "500,20"], "--point '500,20' is outside the 176x120 image"),
    (["--box", "10,10,200,50"], "--box '10,10,200,50' is outside"),
    (["--box", "50,50,40,60"], "empty or inverted"),
    (["--point", "10"], "--point '10' is not x,y[,label]"),
    (["--point", "10,10,2"], "label must be 1"),
    ([], "empty prompt"),
    (["--everything", "--point", "3,3"], "--everything takes no"),
])
def test_bad_prompts_exit_2_with_one_line(files, tmp_path, capsys, extra, needle):
    ckpt, image = files
    code, _, err = _run(capsys, str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o.png"), *extra)
    assert code == 2 and needle in err and err.count("\n") == 1, err


def test_bad_files_exit_2_naming_them(files, tmp_path, capsys):
    ckpt, image = files
    out = str(tmp_path / "o.png")
    code, _, err = _run(capsys, str(tmp_path / "nope.png"), "--checkpoint", str(ckpt), "--box", "1,1,5,5",
                        "--out", out)
    assert code == 2 and "nope.png" in err and err.count("\n") == 1
    (tmp_path / "junk.png").write_bytes(b"not an image")
    code, _, err = _run(capsys, str(tmp_path / "junk.png"), "--checkpoint", str(ckpt), "--box", "1,1,5,5",
                        "--out", out)
    assert code == 2 and "junk.png" in err
    code, _, err = _run(capsys, str(image), "--checkpoint", str(ckpt), "--model", "mobile_sam", "--box", "1,1,5,5",
                        "--out", out)
    assert code == 2 and str(ckpt) in err and "not a mobile_sam checkpoint" in err and "edge_sam" in err
    code, _, err = _run(capsys, str(image), "--checkpoint", str(tmp_path / "none.pth"), "--box", "1,1,5,5",
                        "--out", out)
    assert code == 2 and "none.pth" in err and "does not exist" in err
    torch.save({"backbone.weight": torch.zeros(3)}, tmp_path / "other.pth")
    code, _, err = _run(capsys, str(image), "--checkpoint", str(tmp_path / "other.pth"), "--box", "1,1,5,5",
                        "--out", out)
    assert code == 2 and "other.pth" in err and "not a SAM" in err and err.count("\n") == 1


def test_parse_prompts_shapes():
    coords, labels, boxes = parse_prompts(["1,2", "3,4,0"], ["0,0,5,5"], 10, 10)
    assert coords.tolist() == [[1, 2], [3, 4]] and labels.tolist() == [1, 0] and boxes.tolist() == [[0, 0, 5, 5]]
    with pytest.raises(ValueError, match="points go with one box"):
        parse_prompts(["1,2"], ["0,0,5,5", "1,1,4,4"], 10, 10)


def test_registered_as_forge_infer_command(files, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("forge-infer")
    ckpt, image = files
    proc = subprocess.run([str(exe), "edgesam", str(image), "--checkpoint", str(ckpt), "--out",
                           str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "empty prompt" in proc.stderr
