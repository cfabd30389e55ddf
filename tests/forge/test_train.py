"""End-to-end runs of the core on the digits: learning, checkpoints, forge-test, kill-and-resume, sweeps."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from forge.cli.train import run_train
from tests.forge.helpers import BIN, ROOT, compose_cfg, fast_digits, run_cli


def _state(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_short_training_beats_chance(tmp_path):
    cfg = compose_cfg(fast_digits(str(tmp_path), epochs=8, extra=["schedule.val_interval=4"]))
    metrics = run_train(cfg)
    # 10 balanced classes: chance is 10%; eight short epochs of this ViT reach far more than that
    assert metrics["accuracy/top1"] > 60.0, metrics
    assert metrics["accuracy/top5"] > 90.0, metrics
    assert os.path.isfile(tmp_path / "config.yaml")
    assert os.path.isfile(tmp_path / "plots" / "training.png")
    scalars = glob.glob(str(tmp_path / "*" / "vis_data" / "scalars.json"))
    assert scalars, "JSON-lines scalars were not written"
    lines = [json.loads(x) for x in open(scalars[0])]
    assert any("loss" in r for r in lines) and any("accuracy/top1" in r for r in lines)


def test_checkpoint_round_trip_with_forge_test(tmp_path):
    work = tmp_path / "run"
    cfg = compose_cfg(fast_digits(str(work), epochs=2))
    train_metrics = run_train(cfg)
    last = open(work / "last_checkpoint").read().strip()
    assert os.path.isfile(last) and not glob.glob(str(work / ".*.partial"))
    # rebuild from the saved config alone, in another folder
    proc = run_cli(
        "forge-test", [f"config={work}/config.yaml", f"checkpoint={last}", f"work_dir={tmp_path / 'test'}"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_metrics = json.load(open(tmp_path / "test" / "test_metrics.json"))
    assert test_metrics["accuracy/top1"] == pytest.approx(train_metrics["accuracy/top1"], abs=1e-9)


def _train_cmd(work_dir, epochs):
    return [os.path.join(BIN, "forge-train"), *fast_digits(str(work_dir), epochs=epochs, extra=[
        "model.backbone.drop_path_rate=0.2",  # stochastic depth: the resumed run must replay the same RNG
        "runtime.checkpoint.max_keep=1",
    ])]


def test_sigkill_and_resume_matches_uninterrupted(tmp_path):
    epochs = 5
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = subprocess.run(_train_cmd(tmp_path / "ref", epochs), capture_output=True, text=True, env=env, cwd=ROOT)
    assert ref.returncode == 0, ref.stderr[-3000:]

    work = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(work, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=ROOT)
    deadline = time.time() + 240
    while time.time() < deadline and not os.path.isfile(work / "epoch_2.pth"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.isfile(work / "last_checkpoint"), "no checkpoint was written before the kill"
    assert not os.path.isfile(work / f"epoch_{epochs}.pth"), "the job finished before it could be killed"

    resumed = subprocess.run(_train_cmd(work, epochs) + ["resume=auto"], capture_output=True, text=True, env=env,
                             cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    import re

    found = re.search(r"resumed epoch: (\d+)", resumed.stdout + resumed.stderr)
    # epoch 1 when the kill fell between writing epoch_2.pth and pointing last_checkpoint at it
    assert found and int(found.group(1)) >= 1, "the job did not resume from a checkpoint"
    a, b = _state(tmp_path / "ref" / f"epoch_{epochs}.pth"), _state(work / f"epoch_{epochs}.pth")
    assert _max_diff(a, b) == 0.0
    ma = json.load(open(tmp_path / "ref" / "metrics.json"))
    mb = json.load(open(work / "metrics.json"))
    assert ma["accuracy/top1"] == mb["accuracy/top1"] and ma["_epoch"] == mb["_epoch"] == epochs


def test_sweep_and_summary(tmp_path):
    sweep = tmp_path / "sweep"
    args = fast_digits("null", epochs=1)
    args = [a for a in args if not a.startswith("work_dir")]
    proc = run_cli("forge-train", ["-m", *args, "schedule.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(os.listdir(sweep))
    assert {"0", "1"} <= set(runs)
    for run in ("0", "1"):
        assert os.path.isfile(sweep / run / "metrics.json")
    out = run_cli("forge-summarize", [str(sweep), "--csv", str(tmp_path / "s.csv")])
    assert out.returncode == 0, out.stderr
    assert "schedule.lr" in out.stdout and "accuracy/top1" in out.stdout
    rows = open(tmp_path / "s.csv").read().strip().splitlines()
    assert len(rows) == 3 and "0.001" in rows[1] and "0.003" in rows[2]


def test_summary_reports_runs_without_metrics(tmp_path):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    out = run_cli("forge-summarize", [str(tmp_path)])
    assert out.returncode == 0 and "(no metrics)" in out.stdout
    assert run_cli("forge-summarize", [str(tmp_path / "nothing")]).returncode == 2


def test_distributed_gloo_matches_single_process(tmp_path):
    """2 ranks x batch 16 (torchrun, gloo) end with the weights of 1 rank x batch 32, and in sync."""
    common = [
        "experiment=dynvit/digits_softmax",
        "schedule.by_epoch=false",
        "schedule.max_iters=12",
        "schedule.val_interval=12",
        "runtime.checkpoint.interval=12",
        "schedule.schedulers=[]",
        "runtime.vis.tensorboard=false",
        "runtime.num_vis_images=0",
        "schedule.num_workers=1",
        "schedule.base_batch_size=32",
        # no randomness that legitimately depends on the rank (stochastic depth, worker augmentation)
        "model.backbone.drop_path_rate=0",
        "dataset.train.max_shift=0",
        # SGD is linear in the gradient; Adam's g/sqrt(v) turns float reduction-order noise on near-zero gradients
        # into lr-sized steps, which would hide a real mismatch below the noise
        "schedule.optimizer._target_=torch.optim.SGD",
        "~schedule.optimizer.betas",
        "+schedule.optimizer.momentum=0.9",
        "schedule.lr=0.05",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    single = subprocess.run(
        [os.path.join(BIN, "forge-train"), *common, "schedule.batch_size=32", f"work_dir={tmp_path / 'one'}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    port = str(29500 + os.getpid() % 1000)
    double = subprocess.run(
        ["bash", os.path.join(ROOT, "tools", "dist_train.sh"), "2", *common, "schedule.batch_size=16",
         f"work_dir={tmp_path / 'two'}"],
        capture_output=True, text=True, env=dict(env, PORT=port), cwd=ROOT, timeout=300,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    assert "all 2 ranks finished with identical parameters" in double.stdout + double.stderr
    a, b = _state(tmp_path / "one" / "iter_12.pth"), _state(tmp_path / "two" / "iter_12.pth")
    assert _max_diff(a, b) < 1e-5


def test_distributed_evaluation_uneven_split(tmp_path):
    """forge-test on 2 gloo ranks gives the 1-process accuracy on an odd-sized split (padding not counted twice)."""
    work = tmp_path / "run"
    run_train(compose_cfg(fast_digits(str(work), epochs=1)))
    ckpt = open(work / "last_checkpoint").read().strip()
    odd = ["+dataset.val.test_fraction=0.1005", "schedule.batch_size=8", "schedule.num_workers=0"]
    one = run_cli("forge-test", [f"config={work}/config.yaml", f"checkpoint={ckpt}", f"work_dir={tmp_path}/t1", *odd])
    assert one.returncode == 0, one.stderr[-3000:]
    port = str(30500 + os.getpid() % 1000)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, PORT=port)
    two = subprocess.run(
        ["bash", os.path.join(ROOT, "tools", "dist_test.sh"), "2", f"config={work}/config.yaml", f"checkpoint={ckpt}",
         f"work_dir={tmp_path}/t2", *odd],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.load(open(tmp_path / "t1" / "test_metrics.json"))
    m2 = json.load(open(tmp_path / "t2" / "test_metrics.json"))
    from forge.data.digits import DigitsDataset

    assert len(DigitsDataset("val", test_fraction=0.1005)) % 2 == 1
    assert m1 == m2


def test_wandb_offline_and_validation_images(tmp_path):
    cfg = compose_cfg([
        *fast_digits(str(tmp_path), epochs=1),
        "runtime.vis.wandb=true",
        "runtime.num_vis_images=4",
    ])
    run_train(cfg)
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert runs, "wandb did not write an offline run"
    images = glob.glob(str(tmp_path / "*" / "vis_data" / "vis_image" / "val*predictions*"))
    assert images, "validation images were not logged"


def test_submitit_local_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    args = [a for a in fast_digits("null", epochs=1) if not a.startswith("work_dir")]
    proc = run_cli("forge-train", ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                                   *args, "seed=0,1", f"hydra.sweep.dir={sweep}"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for run in ("0", "1"):
        assert os.path.isfile(sweep / run / "metrics.json"), os.listdir(sweep)


def test_forge_infer_dynvit(tmp_path):
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    work = tmp_path / "run"
    run_train(compose_cfg(fast_digits(str(work), epochs=1)))
    ckpt = open(work / "last_checkpoint").read().strip()
    digit = load_digits().images[0]  # a zero, drawn dark-on-light as a user would
    Image.fromarray((255 - digit / 16 * 255).astype(np.uint8)).resize((64, 64)).save(tmp_path / "d.png")
    out = run_cli("forge-infer", ["dynvit", str(tmp_path / "d.png"), "--checkpoint", ckpt, "--out",
                                  str(tmp_path / "pred.png"), "--json", str(tmp_path / "p.json"), "--topk", "10"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.path.getsize(tmp_path / "pred.png") > 1000
    top = json.load(open(tmp_path / "p.json"))[str(tmp_path / "d.png")]
    # all ten classes, once each, best first: a softmax over them sums to one
    probs = [p for _, p in top]
    assert sorted(name for name, _ in top) == [str(i) for i in range(10)]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1.0) < 1e-5
    # the command's answer is the model's: the same checkpoint run in-process on the same input
    from dynvit.infer import _preprocess
    from forge.inference import load_model

    model, cfg = load_model(ckpt)
    # the model normalises its own input: the pixel values through its data preprocessor, then the network
    x = model.data_preprocessor.normalize(_preprocess(Image.open(tmp_path / "d.png"), cfg)[None])
    with torch.no_grad():
        direct = model(x, mode="tensor").softmax(-1)[0]
    assert top[0][0] == str(int(direct.argmax())) and abs(top[0][1] - float(direct.max())) < 1e-6
    bad = run_cli("forge-infer", ["dynvit", str(tmp_path / "d.png"), "--checkpoint", str(tmp_path / "none.pth"),
                                  "--out", str(tmp_path / "x.png")])
    assert bad.returncode == 2 and "does not exist" in bad.stderr


class _CountLoads:
    """Counts ``torch.load`` calls (every reader of a checkpoint file goes through it)."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        original = torch.load

        def counting(f, *args, **kwargs):
            self.calls.append(str(f))
            return original(f, *args, **kwargs)

        monkeypatch.setattr(torch, "load", counting)


def _summary_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "best " in line or "last " in line]


def test_rerun_is_refused_and_resume_or_overwrite_are_explicit(tmp_path, capsys, monkeypatch):
    from forge.config import ConfigError

    work = tmp_path / "run"
    run_train(compose_cfg(fast_digits(str(work), epochs=1)))
    record = json.load(open(work / "checkpoints.json"))
    best = work / record["best"]["accuracy/top1"]
    assert record["last"] == "epoch_1.pth" and best.name == "best_accuracy_top1_epoch_1.pth" and best.is_file()
    out = capsys.readouterr().out
    assert f"last      {work / 'epoch_1.pth'}" in out and f"best      {best}  (accuracy/top1)" in out

    with pytest.raises(ConfigError) as err:  # the same command again
        run_train(compose_cfg(fast_digits(str(work), epochs=1)))
    assert str(work) in str(err.value) and "resume=auto" in str(err.value) and "overwrite=true" in str(err.value)
    with pytest.raises(ConfigError, match="exclude each other"):
        run_train(compose_cfg(fast_digits(str(work), epochs=1, extra=["resume=auto", "overwrite=true"])))

    # a stray best checkpoint that sorts first: the summary must name the checkpoints this run saved
    decoy = work / "best_accuracy_top1_epoch_0.pth"
    decoy.write_bytes(best.read_bytes())
    loads = _CountLoads(monkeypatch)
    run_train(compose_cfg(fast_digits(str(work), epochs=2, extra=["resume=auto"])))
    assert loads.calls == [str(work / "epoch_1.pth")]  # the resumed checkpoint, read once
    summary = _summary_lines(capsys.readouterr().out)
    record = json.load(open(work / "checkpoints.json"))
    assert record["last"] == "epoch_2.pth" and "epoch_0" not in "".join(summary)
    assert any(str(work / record["best"]["accuracy/top1"]) in line for line in summary), summary

    run_train(compose_cfg(fast_digits(str(work), epochs=1, extra=["overwrite=true"])))
    out = capsys.readouterr().out
    assert f"overwrite=true: deleted the earlier run in {work}" in out
    left = sorted(p.name for p in work.glob("*.pth"))
    assert left == ["best_accuracy_top1_epoch_1.pth", "epoch_1.pth"], left  # decoy and epoch_2 are gone


def test_a_failed_start_leaves_no_run_behind(tmp_path, monkeypatch):
    """A run stopped at start-up (here: the model's weight initialisation refuses, as a paper row without its
    ImageNet backbone does) must not leave a config.yaml or log folder that forces overwrite=true next time."""
    from forge.config import ConfigError
    from forge.models import ImageClassifier

    def refuse(self):
        raise ConfigError("model.backbone_checkpoint is required")

    work = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(ImageClassifier, "init_weights", refuse)
        with pytest.raises(ConfigError, match="backbone_checkpoint is required"):
            run_train(compose_cfg(fast_digits(str(work), epochs=1)))
    from forge.cli.train import earlier_run_files

    assert earlier_run_files(str(work)) == [] and not (work / "config.yaml").exists()
    run_train(compose_cfg(fast_digits(str(work), epochs=1)))  # the same command, fixed: no overwrite=true needed
    kept = earlier_run_files(str(work))
    assert "config.yaml" in kept and "epoch_1.pth" in kept

    with monkeypatch.context() as m:  # a resumed run that fails at start-up keeps the earlier run's files
        m.setattr(ImageClassifier, "init_weights", refuse)
        with pytest.raises(ConfigError):
            run_train(compose_cfg(fast_digits(str(work), epochs=2, extra=["resume=auto"])))
    assert set(kept) <= set(earlier_run_files(str(work)))


def test_cli_non_utf8_annotation_file_is_one_line_naming_it(tmp_path):
    from forge.data.shapes import make_shapes

    root = tmp_path / "shapes"
    make_shapes(str(root), num_train=2, num_val=1, size=64)
    ann = root / "annotations" / "instances_train.json"
    text = ann.read_text(encoding="utf-8")
    ann.write_bytes(text.replace('"images"', '"info": {"author": "Jos\u00e9"}, "images"', 1).encode("latin-1"))
    work = tmp_path / "run"
    proc = run_cli("forge-train", ["experiment=yolact/shapes", f"dataset.root={root}", f"work_dir={work}",
                                   "schedule.max_iters=1", "schedule.num_workers=0"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert f"{ann}: not UTF-8 text (byte 0xe9" in lines[0]
    assert not (work / "config.yaml").exists()  # nothing left that would need overwrite=true


def test_discard_failed_start_keeps_a_run_that_trained(tmp_path):
    from forge.cli.train import discard_failed_start

    (tmp_path / "config.yaml").write_text("a: 1\n")
    (tmp_path / "20260101_120000").mkdir()

    class Started:
        iter = 3

    assert discard_failed_start(str(tmp_path), [], Started()) == []
    (tmp_path / "iter_2.pth").write_bytes(b"")
    assert discard_failed_start(str(tmp_path), [], None) == []  # a checkpoint: the run started
    os.remove(tmp_path / "iter_2.pth")
    assert discard_failed_start(str(tmp_path), [], None) == ["20260101_120000", "config.yaml"]
    assert os.listdir(tmp_path) == []


def test_hydra_files_of_this_launch_are_not_an_earlier_run(tmp_path):
    from forge.cli.train import earlier_run_files

    (tmp_path / ".hydra").mkdir()
    (tmp_path / "train.log").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert earlier_run_files(str(tmp_path)) == []
    for name in ("20260101_120000", "plots"):
        (tmp_path / name).mkdir()
    (tmp_path / "iter_4.pth").write_bytes(b"")
    assert earlier_run_files(str(tmp_path)) == ["20260101_120000", "iter_4.pth", "plots"]


def test_forge_test_of_a_run_uses_its_best_then_its_last_checkpoint(tmp_path, capsys, monkeypatch):
    import shutil

    from forge.cli.test import run_test
    from forge.config import ConfigError

    work = tmp_path / "run"
    train_metrics = run_train(compose_cfg(fast_digits(str(work), epochs=1)))
    best = work / "best_accuracy_top1_epoch_1.pth"
    capsys.readouterr()
    loads = _CountLoads(monkeypatch)
    metrics = run_test(compose_cfg([f"config={work}/config.yaml", f"work_dir={tmp_path / 't1'}"], "test"))
    assert f"evaluating the best checkpoint of {work}: {best}" in capsys.readouterr().out
    assert loads.calls == [str(best)]  # read once (today's safety check included)
    assert metrics["accuracy/top1"] == pytest.approx(train_metrics["accuracy/top1"], abs=1e-9)

    moved = tmp_path / "moved"  # a copied run folder: the record's names are relative to it
    shutil.copytree(work, moved)
    record = json.load(open(moved / "checkpoints.json"))
    json.dump({"last": record["last"], "best": {}}, open(moved / "checkpoints.json", "w"))
    run_test(compose_cfg([f"config={moved}/config.yaml", f"work_dir={tmp_path / 't2'}"], "test"))
    assert f"evaluating the last checkpoint of {moved}: {moved / 'epoch_1.pth'}" in capsys.readouterr().out

    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(work / "config.yaml", empty / "config.yaml")
    with pytest.raises(ConfigError, match=f"{empty} holds no checkpoint of its run"):
        run_test(compose_cfg([f"config={empty}/config.yaml", f"work_dir={tmp_path / 't3'}"], "test"))
    with pytest.raises(ConfigError, match="checkpoint= is required"):
        run_test(compose_cfg([f"work_dir={tmp_path / 't4'}"], "test"))


def test_experiment_name_has_one_timestamp_and_is_unique_per_runner(tmp_path):
    import re

    from forge.runner import build_runner

    cfg = compose_cfg(fast_digits(str(tmp_path)))
    a, b = build_runner(cfg, str(tmp_path), mode="test"), build_runner(cfg, str(tmp_path), mode="test")
    for runner in (a, b):
        assert re.fullmatch(r"dynvit_digits_softmax(-\d+)?_\d{8}_\d{6}", runner.experiment_name), runner.experiment_name
        assert runner.experiment_name.endswith(runner.timestamp)
    assert a.experiment_name != b.experiment_name and a.logger is not b.logger and a.visualizer is not b.visualizer
