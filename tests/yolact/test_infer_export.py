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
from yolact.infer import main


@pytest.fixture(scope="module")
def official_r50(tmp_path_factory):
    manifest, _ = load_case("yolact_resnet50")
    state = seeded_state_dict(manifest["state_dict"], 0)
    path = tmp_path_factory.mktemp("w") / "yolact_resnet50_54_800000.pth"
    torch.save(state, path)
    return path, state


def test_infer_official_checkpoint_to_png_and_json(official_r50, tmp_path, capsys):
    path, _ = official_r50
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(120, 160), (90, 70)]):
        p = tmp_path / f"img_{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        images.append(str(p))
    out_dir, results = tmp_path / "out", tmp_path / "res.json"
    assert main([*images, "--checkpoint", str(path), "--out", str(out_dir), "--json", str(results),
                 "--max-size", "256", "--score-thr", "0.0", "--device", "cpu"]) == 0
    assert "yolact_resnet50" in capsys.readouterr().out
    for name, (h, w) in zip(("img_000001", "img_000002"), [(120, 160), (90, 70)]):
        png = np.asarray(Image.open(out_dir / f"{name}.png"))
        assert png.shape == (h, w, 3)
    recs = json.loads(results.read_text())
    assert {r["image_id"] for r in recs} == {1, 2}
    r = recs[0]
    assert set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert mask_utils.decode(r["segmentation"]).shape == (120, 160)
    assert 1 <= r["category_id"] <= 90
    single = tmp_path / "one.png"
    assert main([images[1], "--checkpoint", str(path), "--out", str(single), "--model", "yolact_resnet50",
                 "--max-size", "256", "--nms", "standard"]) == 0
    assert single.is_file()
    with pytest.raises(FileNotFoundError):
        main(["missing.jpg", "--checkpoint", str(path), "--out", str(single)])


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
