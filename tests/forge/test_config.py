"""Config composition: every experiment composes and names importable targets; bad values fail early and clearly."""

from __future__ import annotations

import glob
import importlib
import os
from pathlib import Path

import pytest
from hydra.utils import get_class, get_method
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

import forge
from forge.config import ConfigError, load_config, save_config, validate
from tests.forge.helpers import CONFIG_DIR, compose_cfg, run_cli

EXPERIMENTS = sorted(
    os.path.relpath(p, os.path.join(CONFIG_DIR, "experiment"))[: -len(".yaml")]
    for p in glob.glob(os.path.join(CONFIG_DIR, "experiment", "**", "*.yaml"), recursive=True)
)


def _targets(node, path="cfg"):
    if isinstance(node, DictConfig):
        for key in node.keys():
            if key == "_target_":
                yield path, node[key]
            elif not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key):
                yield from _targets(node[key], f"{path}.{key}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _targets(item, f"{path}[{i}]")


def _importable(target: str) -> None:
    try:
        get_class(target)
    except Exception:
        get_method(target)


def test_experiments_found():
    assert "dynvit/digits_relu_ln" in EXPERIMENTS and "dynvit/digits_softmax" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.experiment_name == experiment, "experiment_name must be the file's path under forge/configs/experiment"
    for path, target in _targets(cfg):
        try:
            _importable(target)
        except Exception as err:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{experiment}: {path}._target_={target!r} cannot be imported: {err}")


def test_defaults_are_the_demo():
    cfg = compose_cfg(["experiment=dynvit/digits_relu_ln"])
    assert cfg.model.backbone.attn_layer.norm == "relu_ln"
    assert cfg.dataset.name == "digits"
    assert cfg.seed == 0 and cfg.resume is False
    validate(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("schedule.lr=-0.1", "schedule.lr=-0.1 is invalid: must be a number > 0"),
        ("schedule.batch_size=0", "schedule.batch_size=0 is invalid"),
        ("runtime.device=tpu", "runtime.device='tpu' is invalid: valid choices are auto, cpu, cuda"),
        ("seed=-3", "seed=-3 is invalid"),
        ("resume=/no/such.pth", "resume='/no/such.pth' is invalid"),
    ],
)
def test_bad_value_is_named(override, message):
    cfg = compose_cfg(["experiment=dynvit/digits_relu_ln", override])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        validate(cfg)


def test_missing_dataset_path_is_named(tmp_path):
    cfg = compose_cfg(["dataset=folder", f"dataset.root={tmp_path}/nope", "dataset.num_classes=3"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert f"dataset.train.root='{tmp_path}/nope/train' does not exist" in str(err.value)


def test_missing_pipeline_says_to_select_one_and_lists_them(tmp_path, monkeypatch):
    user = tmp_path / "user_configs" / "pipeline"
    user.mkdir(parents=True)
    (user / "my_aug.yaml").write_text("train: []\nval: []\n")
    monkeypatch.setenv("FORGE_CONFIG_DIR", str(tmp_path / "user_configs"))
    cfg = compose_cfg(["dataset=coco", "model=yolact/yolact_base", f"dataset.root={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    packaged = sorted(p.stem for p in (Path(forge.__file__).parent / "configs" / "pipeline").glob("*.yaml"))
    available = ", ".join(sorted([*packaged, "my_aug"]))
    assert "yolact_ssd" in packaged and "crowddet" in packaged
    assert ("dataset.train.pipeline, dataset.val.pipeline are required: select the augmentation with "
            f"pipeline=<name> (available: {available})") in msg
    assert "pipeline=..." not in msg
    cfg = compose_cfg(["dataset=coco", "model=yolact/yolact_base", f"dataset.root={tmp_path}", "pipeline=yolact_ssd"])
    with pytest.raises(ConfigError) as err:  # still fails (no COCO files there), but not for the pipeline
        validate(cfg)
    assert "pipeline=<name>" not in str(err.value) and "pipeline is required" not in str(err.value)


def test_cli_bad_override_fails_before_training(tmp_path):
    proc = run_cli("forge-train", ["experiment=dynvit/digits_relu_ln", "schedule.lr=-1", f"work_dir={tmp_path}"])
    assert proc.returncode == 2
    assert "schedule.lr=-1 is invalid: must be a number > 0" in proc.stderr
    assert not os.path.exists(os.path.join(tmp_path, "last_checkpoint"))


def test_cli_unknown_group_option_lists_choices(tmp_path):
    proc = run_cli("forge-train", ["model=dynvit/vit_huge", f"work_dir={tmp_path}"])
    assert proc.returncode != 0
    err = proc.stderr
    assert proc.returncode == 2
    assert "model='dynvit/vit_huge' is not an option of the config group 'model'" in err
    assert "dynvit/vit_digits" in err and "dynvit/vit_tiny" in err


def test_cli_print_config_runs_nothing(tmp_path):
    proc = run_cli("forge-train", ["experiment=dynvit/digits_relu_ln", f"work_dir={tmp_path}", "--cfg", "job"])
    assert proc.returncode == 0, proc.stderr
    assert "norm: relu_ln" in proc.stdout
    assert not os.listdir(tmp_path)


def test_saved_config_round_trip(tmp_path):
    cfg = compose_cfg(["experiment=dynvit/digits_relu_ln", f"work_dir={tmp_path}"])
    path = save_config(cfg, str(tmp_path))
    loaded = load_config(path)
    assert loaded.model.backbone.attn_layer.norm == "relu_ln"
    # interpolations are resolved: the saved file stands alone
    assert loaded.model.backbone.num_classes == 10
    assert loaded.model.loss._target_ == "forge.models.CrossEntropyLoss"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_every_config_module_importable():
    for name in ("forge.runner", "forge.hooks", "forge.cli.train", "forge.cli.test", "forge.cli.summarize"):
        importlib.import_module(name)


def test_lt_resolver():
    cfg = OmegaConf.create({"b": 4, "small": "${forge.lt:${b},6}", "big": "${forge.lt:${b},2}",
                            "bad": "${forge.lt:x,2}"})
    assert cfg.small is True and cfg.big is False
    with pytest.raises(InterpolationResolutionError, match=r"forge\.lt:x,2.*both arguments must be numbers"):
        _ = cfg.bad
