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
    with torch.no_grad():
        direct = model(_preprocess(Image.open(tmp_path / "d.png"), cfg).unsqueeze(0), mode="tensor").softmax(-1)[0]
    assert top[0][0] == str(int(direct.argmax())) and abs(top[0][1] - float(direct.max())) < 1e-6
    bad = run_cli("forge-infer", ["dynvit", str(tmp_path / "d.png"), "--checkpoint", str(tmp_path / "none.pth"),
                                  "--out", str(tmp_path / "x.png")])
    assert bad.returncode == 2 and "does not exist" in bad.stderr
