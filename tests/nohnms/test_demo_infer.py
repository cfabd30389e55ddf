"""A shortened ``make demo-nohnms`` (a few iterations on a few synthetic images: the pipeline, not the numbers)
and ``forge-infer nohnms`` on the trained checkpoint."""

from __future__ import annotations

import pytest
from PIL import Image

from nohnms import demo, infer

TINY = ["schedule.max_iters=3", "schedule.batch_size=2", "schedule.val_batch_size=2", "schedule.warmup_iters=1",
        "model.fpn_channels=16", "model.representation_size=32", "model.roi_batch_size_per_image=32",
        "model.rpn_pre_nms_top_n_train=300", "model.rpn_post_nms_top_n_train=100", "runtime.vis.local=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    data, work = root / "data", root / "work"
    code = demo.main(["--data", str(data), "--train", "6", "--val", "3", "--work-dir", str(work), *TINY])
    return data, work, code


def test_short_demo_trains_and_compares_both_nms(run, capsys):
    data, work, code = run
    assert code in (0, 1)  # 1: NOH-NMS did not beat greedy NMS, expected after 3 iterations
    assert (work / "config.yaml").is_file() and (work / "last_checkpoint").is_file()
    pairs, res, preds, gts, _, records = demo.evaluate_run(str(work))
    assert len(pairs) == 3 and set(res) == {"greedy", "noh"} == set(records)
    lines = demo.diagnosis(pairs, gts, records)
    assert lines[0].startswith("| miss rate at FPPI") and len(lines[2].split("|")) == 13
    for r in res.values():
        assert {"AP", "recall", "MR-2"} <= set(r)
    for per_image in preds.values():  # both sorted by their final score, at most max_det (100) per image
        for p in per_image.values():
            assert len(p.scores) <= 100 and bool((p.scores[:-1] >= p.scores[1:]).all())
            assert p.boxes.shape == p.overlap_boxes.shape
    found, total = demo.crowded_recall(gts, preds["noh"], score=0.0)
    assert 0 <= found <= total
    out = data.parent / "pic.png"
    shown = demo.picture(pairs, preds["greedy"], preds["noh"], gts, str(out), score=0.0)
    assert shown.startswith("val_") and Image.open(out).size == (2 * 320 + 8, 240)


def test_infer_draws_detections_and_neighbours(run, tmp_path, capsys):
    data, work, _ = run
    ckpt = (work / "last_checkpoint").read_text().strip()
    image = str(data / "Images" / "val_000000.png")
    out = tmp_path / "out.png"
    assert infer.main([image, "--checkpoint", ckpt, "--out", str(out), "--show-neighbours", "--score-thr", "0"]) == 0
    assert Image.open(out).size == (320, 240)
    assert "noh NMS" in capsys.readouterr().out
    assert infer.main([image, image, "--checkpoint", ckpt, "--out", str(tmp_path / "dir"), "--nms", "greedy"]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["val_000000.png", "val_000000_2.png"]


@pytest.mark.parametrize("case", ["image", "checkpoint", "bad_checkpoint"])
def test_infer_errors_exit_2_with_one_line(run, tmp_path, capsys, case):
    data, work, _ = run
    ckpt = (work / "last_checkpoint").read_text().strip()
    image = str(data / "Images" / "val_000000.png")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    args = {"image": [str(tmp_path / "none.png"), "--checkpoint", ckpt],
            "checkpoint": [image, "--checkpoint", str(tmp_path / "none.pth")],
            "bad_checkpoint": [image, "--checkpoint", str(bad), "--config", str(work / "config.yaml")]}[case]
    with pytest.raises(SystemExit) as exc:
        infer.main([*args, "--out", str(tmp_path / "o.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: forge-infer nohnms:")
    assert {"image": "none.png", "checkpoint": "none.pth", "bad_checkpoint": "bad.pth"}[case] in err


def test_forge_test_evaluates_with_either_nms(run, tmp_path):
    from forge.cli.test import run_test
    from tests.forge.helpers import compose_cfg

    data, work, _ = run
    ckpt = (work / "last_checkpoint").read_text().strip()
    out = {}
    for nms in ("noh", "greedy"):  # the experiment as forge-test composes it, one override apart
        cfg = compose_cfg(["experiment=nohnms/crowd_synth", f"dataset.root={data}", f"checkpoint={ckpt}",
                           f"work_dir={tmp_path / nms}", f"model.nms={nms}", *TINY], "test")
        out[nms] = run_test(cfg)
        assert {"crowdhuman/AP", "crowdhuman/MR-2", "crowdhuman/recall"} <= set(out[nms])
        assert (tmp_path / nms / "test_metrics.json").is_file()
