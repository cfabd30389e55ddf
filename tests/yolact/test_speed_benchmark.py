"""Smoke test of benchmarks/yolact_speed.py: every variant it offers on this machine runs (a tiny input), and the
tables land in their docs section only."""

from tests.benchmark_script import load_benchmark


def test_speed_benchmark_runs_every_cpu_variant(capsys, tmp_path):
    module = load_benchmark("yolact_speed")
    md = tmp_path / "benchmarks.md"
    md.write_text("# B\nhuman text\n<!-- yolact-speed:begin -->\nold numbers\n<!-- yolact-speed:end -->\nmore\n")
    args = ["--device", "cpu", "--models", "yolact_resnet50", "--size", "64", "--iters", "1", "--warmup", "0",
            "--candidates", "300", "--md", str(md)]
    module.main(args)
    out = capsys.readouterr().out
    text = md.read_text()
    assert text.startswith("# B\nhuman text\n<!-- yolact-speed:begin -->\nMachine: ") and text.endswith(
        "<!-- yolact-speed:end -->\nmore\n")
    assert "old numbers" not in text and f"Command: `python benchmarks/yolact_speed.py {' '.join(args)}`" in text
    section = text.split("<!-- yolact-speed:begin -->")[1]
    assert all(line in section for line in out.splitlines() if line.startswith("| yolact_resnet50 |"))
    assert "failed" not in out, out
    rows = [line for line in out.splitlines() if line.startswith("| yolact_resnet50 |")]
    assert {"eager fp32", "channels-last"} <= {r.split("|")[3].strip() for r in rows}, out
    for method in ("Fast NMS (per class)", "Fast NMS (class-agnostic)", "standard NMS (batched_nms)"):
        assert f"| {method} |" in out, out


def _load(name: str):
    return load_benchmark(name)


def _fake_run(run, overrides, metrics, seconds):
    """A run folder as forge-train leaves it: resolved config.yaml, metrics.json, the val grid and the curves."""
    import json
    import os

    import numpy as np
    from PIL import Image

    from forge.config import save_config
    from tests.forge.helpers import compose_cfg

    save_config(compose_cfg(["experiment=yolact/shapes", "schedule.num_workers=0", *overrides]), str(run))
    (run / "metrics.json").write_text(json.dumps({**metrics, "_phase": "val", "_iter": 1000}))
    for sub, value in (("20261124_000000/vis_data/vis_image/val_predictions_1000.png", 10), ("plots/training.png", 20)):
        (run / sub).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 6, 3), value, dtype=np.uint8)).save(run / sub)
    os.utime(run / "config.yaml", (1000, 1000))
    os.utime(run / "metrics.json", (1000 + seconds, 1000 + seconds))


def test_shapes_demo_script_writes_rows_changes_and_figures(tmp_path):
    demo = _load("yolact_shapes_demo")
    m = {"coco/segm_mAP": 0.428, "coco/segm_mAP_50": 0.65, "coco/segm_mAP_75": 0.472, "coco/bbox_mAP": 0.491,
         "coco/bbox_mAP_50": 0.739, "coco/bbox_mAP_75": 0.567}
    _fake_run(tmp_path / "a", [], m, 691)
    _fake_run(tmp_path / "b", ["seed=1", "schedule.lr=1e-3"], {**m, "coco/segm_mAP_50": 0.5}, 65)
    md = tmp_path / "benchmarks.md"
    md.write_text("intro\n<!-- yolact-shapes:begin -->\nold\n<!-- yolact-shapes:end -->\nafter\n")
    demo.main([f"demo={tmp_path / 'a'}", f"seed 1={tmp_path / 'b'}", "--md", str(md), "--img-dir",
               str(tmp_path / "img")])
    text = md.read_text()
    assert text.startswith("intro\n<!-- yolact-shapes:begin -->\nMade on ") and text.endswith("end -->\nafter\n")
    assert "| demo | — | 1,000 | 11 min 31 s | 0.428 / 0.650 / 0.472 | 0.491 / 0.739 / 0.567 |" in text
    assert "| seed 1 | `schedule.lr=0.001` `seed=1` | 1,000 | 1 min 5 s | 0.428 / 0.500 / 0.472 |" in text
    assert "![ground truth and predictions on shapes val images](img/yolact_shapes_val.png)" in text
    val = (tmp_path / "img" / "yolact_shapes_val.png").read_bytes()
    assert val == next((tmp_path / "a").glob("*/vis_data/vis_image/*.png")).read_bytes()
    assert (tmp_path / "img" / "yolact_shapes_training.png").read_bytes() == (
        tmp_path / "a" / "plots" / "training.png").read_bytes()


def test_anchor_stats_script_writes_its_section(tmp_path):
    from forge.data.shapes import make_shapes

    make_shapes(str(tmp_path / "s"), num_train=3, num_val=1, size=64, seed=0)
    md = tmp_path / "b.md"
    md.write_text("<!-- yolact-anchor-stats:begin -->\n<!-- yolact-anchor-stats:end -->\n")
    ann = str(tmp_path / "s" / "annotations" / "instances_train.json")
    _load("yolact_anchor_stats").main([ann, "--size", "64", "--images", "3", "--md", str(md)])
    rows = [line for line in md.read_text().splitlines() if line.startswith("| ") and "/" in line.split("|")[1]]
    assert len(rows) == 4 and "square (YOLACT quirk)" in rows[0] and "rectangles" in rows[1], rows
    assert f"Command: `python benchmarks/yolact_anchor_stats.py {ann} --size 64 --images 3 --md {md}`" in md.read_text()
