"""``forge-infer yolact`` on an official-format checkpoint, and ONNX export checked with onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from forge.vis.draw import draw_instances
from tests.yolact.official_fixtures import load_case, seeded_state_dict
from yolact.configs import official_kwargs
from yolact.convert import build_for_state, convert_state_dict
from yolact.export import check_onnx, export_onnx
from yolact.export import main as export_main
from yolact.infer import main


@pytest.fixture(scope="module")
def official_r50(tmp_path_factory):
    manifest, _ = load_case("yolact_resnet50")
    state = seeded_state_dict(manifest["state_dict"], 0)
    path = tmp_path_factory.mktemp("w") / "yolact_resnet50_54_800000.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def bad_checkpoints(official_r50, tmp_path) -> dict[str, object]:
    """Checkpoints that must be refused, by file name: absent, not a checkpoint, no weights, a layer missing."""
    _, state = official_r50
    cases = {"absent.pth": None, "garbage.pth": b"\x00not a checkpoint", "numbers.pth": {"a": 1},
             "no_protonet.pth": {k: v for k, v in state.items() if not k.startswith("proto_net.")}}
    paths = {}
    for name, content in cases.items():
        paths[name] = tmp_path / name
        if isinstance(content, bytes):
            paths[name].write_bytes(content)
        elif content is not None:
            torch.save(content, paths[name])
    return paths


def _exit_line(capsys, argv, command=main) -> str:
    """The one stderr line of a ``forge-infer yolact`` (or ``command``) call that must end with status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        command(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _random_pngs(paths, shapes, seed: int) -> list[str]:
    """Random ``(H, W, 3)`` images of ``shapes`` saved at ``paths`` (their folders created)."""
    rng = np.random.default_rng(seed)
    for path, (h, w) in zip(paths, shapes, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return [str(p) for p in paths]


def test_infer_official_checkpoint_to_png_and_json(official_r50, tmp_path, capsys):
    path, _ = official_r50
    images = _random_pngs([tmp_path / "img_000001.jpg", tmp_path / "img_000002.jpg"], [(120, 160), (90, 70)], 0)
    out_dir, results = tmp_path / "out", tmp_path / "res.json"
    assert main([*images, "--checkpoint", str(path), "--out", str(out_dir), "--json", str(results),
                 "--max-size", "256", "--score-thr", "0.0", "--device", "cpu"]) == 0
    assert "yolact_resnet50" in capsys.readouterr().out
    for name, (h, w) in zip(("img_000001", "img_000002"), [(120, 160), (90, 70)]):
        png = np.asarray(Image.open(out_dir / f"{name}.png"))
        assert png.shape == (h, w, 3)
    boxes = json.loads((tmp_path / "res.bbox.json").read_text())
    masks = json.loads((tmp_path / "res.segm.json").read_text())
    assert {r["image_id"] for r in boxes} == {r["image_id"] for r in masks} == {1, 2}
    assert len(boxes) == len(masks)
    # forge-test's format: mask results carry no bbox, so COCO takes their area from the mask
    assert set(boxes[0]) == {"image_id", "category_id", "bbox", "score"}
    assert set(masks[0]) == {"image_id", "category_id", "segmentation", "score"}
    assert mask_utils.decode(masks[0]["segmentation"]).shape == (120, 160)
    assert 1 <= boxes[0]["category_id"] <= 90
    single = tmp_path / "one.png"
    assert main([images[1], "--checkpoint", str(path), "--out", str(single), "--model", "yolact_resnet50",
                 "--max-size", "256", "--nms", "standard"]) == 0
    assert single.is_file()


def test_bad_images_and_checkpoints_exit_2_naming_the_file(official_r50, bad_checkpoints, tmp_path, capsys):
    path, _ = official_r50
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(good)
    out = ["--out", str(tmp_path / "out"), "--max-size", "128", "--device", "cpu"]
    assert "missing.jpg" in _exit_line(capsys, [str(good), str(tmp_path / "missing.jpg"), "--checkpoint", str(path),
                                                *out])
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    assert "cannot read image" in _exit_line(capsys, [str(good), str(bad), "--checkpoint", str(path), *out])
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    assert "cut.png" in _exit_line(capsys, [str(truncated), "--checkpoint", str(path), *out])
    for name, ckpt in bad_checkpoints.items():
        assert str(ckpt) in _exit_line(capsys, [str(good), "--checkpoint", str(ckpt), *out]), name


def test_json_image_ids_are_unique_for_repeated_file_names(official_r50, tmp_path):
    from yolact.infer import image_ids

    assert image_ids(["a/000000000139.jpg", "b/000000000285.jpg"]) == [139, 285]  # COCO's own ids
    assert image_ids(["a/000001.png", "b/000001.png"]) == [1, 2]
    assert image_ids(["x/img_7.png", "x/img_7.png", "y/plain.png"]) == [1, 2, 3]
    path, _ = official_r50
    images = _random_pngs([tmp_path / "a" / "000001.png", tmp_path / "b" / "000001.png"], [(64, 80)] * 2, 1)
    images.append(images[0])  # the same image again
    out_dir, results = tmp_path / "out", tmp_path / "res"
    assert main([*images, "--checkpoint", str(path), "--out", str(out_dir), "--json", str(results),
                 "--max-size", "128", "--score-thr", "0.0", "--device", "cpu"]) == 0
    boxes = json.loads((tmp_path / "res.bbox.json").read_text())
    per_image = {i: [(r["category_id"], r["score"]) for r in boxes if r["image_id"] == i] for i in (1, 2, 3)}
    assert all(per_image.values()) and {r["image_id"] for r in boxes} == {1, 2, 3}
    assert per_image[1] == per_image[3] != per_image[2]  # the repeat gives the same detections under its own id
    assert sorted(p.name for p in out_dir.iterdir()) == ["000001.png", "000001_2.png", "000001_3.png"]


def test_draw_instances_overlays_masks_boxes_and_text():
    img = np.full((40, 50, 3), 100, np.uint8)
    masks = np.zeros((2, 40, 50), bool)
    masks[0, 10:20, 10:20] = True
    out = draw_instances(img, boxes=np.array([[10, 10, 20, 20], [30, 5, 45, 35]]), labels=[0, 1],
                         scores=[0.9, 0.1], masks=masks, class_names=["cat", "dog"], score_threshold=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[15, 15], img[15, 15])  # mask blended
    assert np.array_equal(out[30, 40], img[30, 40])  # second instance below threshold: untouched
    with pytest.raises(ValueError, match="uint8"):
        draw_instances(img.astype(np.float32))


@pytest.mark.parametrize("case", ["yolact_plus_resnet50", pytest.param("yolact_resnet50", marks=pytest.mark.slow)])
def test_onnx_export_matches_pytorch(case, tmp_path):
    manifest, _ = load_case(case)
    kwargs = official_kwargs(case)
    state = convert_state_dict(seeded_state_dict(manifest["state_dict"], 0), darknet=False)
    net = build_for_state(state, kwargs).eval()  # seeded weights: the DCN offsets are far from zero
    path = str(tmp_path / f"{case}.onnx")
    export_onnx(net, path, (256, 320))
    x = torch.randn((2, 3, 256, 320), generator=torch.Generator().manual_seed(0))  # dynamic batch
    diffs = check_onnx(net, path, x, atol=1e-4)
    assert max(diffs.values()) < 1e-4


def test_our_run_writes_its_dataset_names_and_category_ids(tmp_path):
    from omegaconf import OmegaConf

    from yolact.infer import _run_categories

    ann = tmp_path / "val.json"  # non-consecutive ids, listed out of order: labels follow sorted ids
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 9, "name": "cross"}, {"id": 2, "name": "square"}, {"id": 4, "name": "triangle"}]}))
    cfg = OmegaConf.create({"dataset": {"classes": ["square", "triangle", "cross"],
                                        "val": {"ann_file": str(ann)}, "test": "${.val}"}})
    assert _run_categories(cfg, 3) == (["square", "triangle", "cross"], [2, 4, 9])
    del cfg.dataset["classes"]
    assert _run_categories(cfg, 3) == (["square", "triangle", "cross"], [2, 4, 9])
    assert _run_categories(cfg, 5) == (None, None)  # a json of another dataset is not used
    cfg.dataset.val.ann_file = str(tmp_path / "gone.json")
    cfg.dataset["classes"] = ["a", "b", "c"]
    assert _run_categories(cfg, 3) == (["a", "b", "c"], None)


@pytest.fixture
def tiny_run(tmp_path):
    """A run folder as forge-train leaves it (config.yaml + checkpoint) for a small ResNet-18 YOLACT trained with a
    keep-ratio float resize (its pipeline), another mean/std and BGR input (its model's data preprocessor)."""
    from forge.models import ImagePreprocessor
    from yolact.model import Yolact

    run = tmp_path / "run"
    run.mkdir()
    model_kw = dict(backbone="resnet18", num_classes=2, max_size=96, fpn_channels=16, conf_thresh=0.0)
    norm = dict(mean=[10.0, 20.0, 30.0], std=[50.0, 60.0, 70.0], rgb_to_bgr=True)  # in the network's BGR order
    (run / "config.yaml").write_text(json.dumps({
        "model": {"_target_": "yolact.model.Yolact", **model_kw,
                  "data_preprocessor": {"_target_": "forge.models.ImagePreprocessor", **norm}},
        "dataset": {"classes": ["a", "b"]},
        "pipeline": {"val": [{"_target_": "forge.data.transforms.Resize", "size": 96, "keep_ratio": True,
                              "keep_float": True}]}}))
    torch.manual_seed(0)
    net = Yolact(**model_kw, data_preprocessor=ImagePreprocessor(**norm)).eval()
    torch.save({"state_dict": net.state_dict(), "meta": {}}, run / "iter_1.pth")
    return run, net


def test_our_run_is_fed_through_its_own_val_pipeline(tiny_run, tmp_path):
    # a run trained with a keep-ratio resize, another mean/std and BGR input must get exactly that at inference
    from forge.data.structures import DetSample

    run, net = tiny_run
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)  # h, w: keep-ratio resize gives 48 x 96
    Image.fromarray(image).save(tmp_path / "img_000007.png")
    results = tmp_path / "res.json"
    assert main([str(tmp_path / "img_000007.png"), "--checkpoint", str(run / "iter_1.pth"),
                       "--out", str(tmp_path / "out.png"), "--json", str(results), "--device", "cpu"]) == 0
    got = json.loads((tmp_path / "res.bbox.json").read_text())

    # the same input built by hand: bilinear half-pixel resize to 48 x 96, to BGR, (x - mean) / std in BGR order
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, (48, 96), mode="bilinear", align_corners=False)
    mean, std = torch.tensor([10.0, 20.0, 30.0])[:, None, None], torch.tensor([50.0, 60.0, 70.0])[:, None, None]
    x = ((x[0].flip(0) - mean) / std)[None]
    from forge.data.structures import ImageMeta

    meta = ImageMeta(image_id=7, ori_shape=(64, 128), img_shape=(48, 96), pad_shape=(48, 96), scale_factor=(0.75, 0.75))
    with torch.no_grad():
        pred = net(x, [DetSample(meta=meta)], mode="predict")[0].pred
    assert len(got) == len(pred.scores) > 0
    np.testing.assert_allclose([r["score"] for r in got], pred.scores.numpy(), atol=2e-4)
    np.testing.assert_allclose(got[0]["bbox"][:2], pred.boxes[0, :2].numpy(), atol=0.05)
    assert {r["image_id"] for r in got} == {7}


def test_export_of_our_run(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    out = tmp_path / "run.onnx"
    assert export_main(["--checkpoint", str(run / "iter_1.pth"), "--out", str(out), "--size", "64", "96",
                        "--check"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "input 1x3x64x96" in printed and "config.yaml" in printed
    assert "nope.yaml" in _exit_line(capsys, ["--checkpoint", str(run / "iter_1.pth"), "--out", str(out),
                                              "--config", "nope.yaml"], export_main)


def _export_exit_line(capsys, argv) -> str:
    """The one stderr line of a ``python -m yolact.export`` call that must end with status 2."""
    return _exit_line(capsys, argv, export_main)


def test_export_bad_checkpoint_or_argument_exits_2_naming_it(official_r50, bad_checkpoints, tmp_path, capsys):
    path, _ = official_r50
    out = str(tmp_path / "x.onnx")
    for name, ckpt in bad_checkpoints.items():
        assert str(ckpt) in _export_exit_line(capsys, ["--checkpoint", str(ckpt), "--out", out]), name
    ok = ["--checkpoint", str(path), "--model", "yolact_resnet50"]
    nowhere = str(tmp_path / "no_such_dir" / "x.onnx")
    assert "no_such_dir" in _export_exit_line(capsys, [*ok, "--out", nowhere])
    assert "--out" in _export_exit_line(capsys, [*ok, "--out", str(tmp_path)])  # a folder
    assert "--size" in _export_exit_line(capsys, [*ok, "--out", out, "--size", "64", "64", "64"])
    assert "--maskiou" in _export_exit_line(capsys, [*ok, "--out", out, "--size", "64", "--maskiou",
                                                     str(tmp_path / "m.onnx")])  # YOLACT (not ++) has none
    assert not (tmp_path / "x.onnx").exists()
