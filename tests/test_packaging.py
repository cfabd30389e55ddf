"""An installed paperforge finds its configs: the wheel ships forge/configs, a non-editable install composes an
experiment from another folder, and users' own config folders (FORGE_CONFIG_DIR, --config-dir) come after ours."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from forge.cli import common

ROOT = Path(__file__).resolve().parents[1]
SOURCE_CONFIGS = ROOT / "forge" / "configs"

# a user's experiment in their own folder, built on our groups (dataset, model) and a config of their own
USER_EXPERIMENT = """# @package _global_
defaults:
  - override /dataset: digits
  - override /model: my_vit
experiment_name: mine/tiny
"""
USER_MODEL = """defaults:
  - dynvit/vit_digits@_here_
  - _self_
backbone:
  depth: 1
"""


def _user_dir(tmp_path: Path) -> Path:
    user = tmp_path / "my_configs"
    (user / "experiment" / "mine").mkdir(parents=True)
    (user / "model").mkdir()
    (user / "experiment" / "mine" / "tiny.yaml").write_text(USER_EXPERIMENT)
    (user / "model" / "my_vit.yaml").write_text(USER_MODEL)
    return user


def _packages() -> list[str]:
    """Top-level packages the wheel carries: folders with ``__init__.py`` matching pyproject's include list."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(p.name for p in ROOT.iterdir()
                  if (p / "__init__.py").exists() and any(fnmatch.fnmatch(p.name, pat) for pat in include))


# ---- users' config folders, in this process -------------------------------------------------------------------

def test_searchpath_override_joins_the_other_overrides(monkeypatch, tmp_path):
    user = _user_dir(tmp_path)
    monkeypatch.setenv(common.USER_CONFIG_ENV, str(user))
    sp = f"hydra.searchpath=[file://{user}]"
    assert common.with_user_config_dirs(["experiment=a", "--cfg", "job"]) == [sp, "experiment=a", "--cfg", "job"]
    # argparse takes the overrides as one run of positionals: ours goes beside them, not after an option
    assert common.with_user_config_dirs(["--cfg", "job", "a=1", "b=2"]) == ["--cfg", "job", sp, "a=1", "b=2"]
    assert common.with_user_config_dirs(["--info", "searchpath"]) == [sp, "--info", "searchpath"]
    assert common.with_user_config_dirs(["-cd", "x", "--info", "a=1"]) == ["-cd", "x", "--info", sp, "a=1"]
    # the user's own hydra.searchpath wins
    assert common.with_user_config_dirs(["hydra.searchpath=[file:///x]"]) == ["hydra.searchpath=[file:///x]"]
    monkeypatch.delenv(common.USER_CONFIG_ENV)
    assert common.with_user_config_dirs(["a=1"]) == ["a=1"]


def test_override_check_knows_both_locations(monkeypatch, tmp_path, capsys):
    user = _user_dir(tmp_path)
    with pytest.raises(SystemExit):
        common.check_group_overrides(["experiment=mine/tiny"])
    assert "'mine/tiny' is not an option" in capsys.readouterr().err
    for how in ("env", "flag"):
        if how == "env":
            monkeypatch.setenv(common.USER_CONFIG_ENV, str(user))
            argv: list[str] = []
        else:
            monkeypatch.delenv(common.USER_CONFIG_ENV)
            argv = ["--config-dir", str(user)]
        common.check_group_overrides(argv + ["experiment=mine/tiny", "model=my_vit"])  # theirs
        common.check_group_overrides(argv + ["experiment=dynvit/digits_relu_ln"])  # ours
        with pytest.raises(SystemExit):
            common.check_group_overrides(argv + ["experiment=mine/nope"])
        err = capsys.readouterr().err
        assert "mine/tiny" in err and "dynvit/digits_relu_ln" in err, err


def test_a_missing_user_folder_is_named(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(common.USER_CONFIG_ENV, str(tmp_path / "nope"))
    with pytest.raises(SystemExit):
        common.check_group_overrides(["experiment=dynvit/digits_relu_ln"])
    assert f"FORGE_CONFIG_DIR: config folder '{tmp_path / 'nope'}' does not exist" in capsys.readouterr().err


# ---- the wheel, installed non-editable ------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_installs_and_composes_from_another_folder(tmp_path):
    # build from a copy of the working tree, so that no build/ or egg-info lands in the checkout
    stage = tmp_path / "src"
    stage.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, stage / name)
    for pkg in _packages():
        shutil.copytree(ROOT / pkg, stage / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", common.USER_CONFIG_ENV)}
    env.update(OMP_NUM_THREADS="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HYDRA_FULL_ERROR="1")
    pip = [sys.executable, "-m", "pip"]
    _run(pip + ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(stage)],
         tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("paperforge-*.whl")

    # every config yaml is in the wheel, where the CLI looks for it
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("forge/configs/") and n.endswith(".yaml")}
    source = {str(p.relative_to(ROOT)) for p in SOURCE_CONFIGS.rglob("*.yaml")}
    assert shipped == source, f"missing from the wheel: {sorted(source - shipped)}; extra: {sorted(shipped - source)}"
    assert {n.split("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")} == set(_packages())

    site = tmp_path / "site"
    _run(pip + ["install", "-q", "--no-deps", "--target", str(site), str(wheel)], tmp_path, env)
    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing to find as ./forge or ../../configs
    elsewhere.mkdir()
    env["PYTHONPATH"] = str(site)  # before .venv's editable finder, which stays as it is
    forge_train = str(site / "bin" / "forge-train")

    where = _run([sys.executable, "-c", "import forge.cli.common as c; print(c.__file__); print(c.CONFIG_DIR)"],
                 elsewhere, env).split()
    assert where == [str(site / "forge" / "cli" / "common.py"), str(site / "forge" / "configs")]

    cfg = yaml.safe_load(_run([forge_train, "experiment=dynvit/digits_relu_ln", "--cfg", "job"], elsewhere, env))
    assert cfg["experiment_name"] == "dynvit/digits_relu_ln"
    assert cfg["model"]["backbone"]["attn_layer"]["norm"] == "relu_ln"
    assert cfg["dataset"]["train"]["_target_"] == "forge.data.digits.DigitsDataset"

    # the composed config came from the installed copy: Hydra's primary search path is site/forge/configs
    info = _run([forge_train, "experiment=dynvit/digits_relu_ln", "--info", "searchpath"], elsewhere, env)
    main_rows = [line.split("|")[2].strip() for line in info.splitlines() if line.startswith("| main ")]
    assert main_rows == [f"file://{site / 'forge' / 'configs'}"], info
    assert str(ROOT) not in info

    # a user's experiment in their own folder composes on top of the installed groups
    env[common.USER_CONFIG_ENV] = str(_user_dir(tmp_path))
    cfg = yaml.safe_load(_run([forge_train, "experiment=mine/tiny", "--cfg", "job"], elsewhere, env))
    assert cfg["experiment_name"] == "mine/tiny"
    assert cfg["model"]["backbone"]["depth"] == 1 and cfg["model"]["backbone"]["embed_dim"] == 64
    assert cfg["dataset"]["num_classes"] == 10
