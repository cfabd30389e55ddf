"""What the command-line entry points share: where configs live, the work dir, clean error exits."""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig, OmegaConf

# `${forge.first:a,b}`: a unless it is null/empty, else b — lets Hydra's run folder follow `work_dir=` when given
if not OmegaConf.has_resolver("forge.first"):
    OmegaConf.register_new_resolver("forge.first", lambda a, b: b if a in (None, "", "None", "null") else a)
# `${forge.dirname:path}`: the folder of a file, or null (forge-test writes beside the saved config it evaluates)
if not OmegaConf.has_resolver("forge.dirname"):
    OmegaConf.register_new_resolver(
        "forge.dirname", lambda p: None if p in (None, "", "None", "null") else os.path.dirname(os.path.abspath(p))
    )

# forge/configs, shipped inside the installed package (a wheel carries it as package data)
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# users' own config folders, searched after ours (their experiments may use our groups as defaults)
USER_CONFIG_ENV = "FORGE_CONFIG_DIR"
# Hydra's command-line options that take a value (the overrides are the positionals between them)
_HYDRA_VALUE_OPTIONS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                        "--config-dir", "-cd", "--experimental-rerun"}
_HYDRA_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def user_config_dirs(argv: list[str]) -> list[str]:
    """Extra config folders: ``FORGE_CONFIG_DIR`` (``os.pathsep``-separated) and Hydra's ``--config-dir/-cd``."""
    dirs = [d for d in os.environ.get(USER_CONFIG_ENV, "").split(os.pathsep) if d]
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    for d in dirs:
        if not os.path.isdir(d):
            source = USER_CONFIG_ENV if d in os.environ.get(USER_CONFIG_ENV, "").split(os.pathsep) else "--config-dir"
            raise ValueError(f"{source}: config folder {d!r} does not exist")
    return [os.path.abspath(d) for d in dirs]


def with_user_config_dirs(argv: list[str]) -> list[str]:
    """``argv`` with ``FORGE_CONFIG_DIR``'s folders added to Hydra's search path (``hydra.searchpath``), after ours.

    ``--config-dir`` needs nothing: Hydra adds it itself. A ``hydra.searchpath=`` given by the user wins.
    """
    env = [os.path.abspath(d) for d in os.environ.get(USER_CONFIG_ENV, "").split(os.pathsep) if d]
    if not env or any(a.lstrip("+").startswith("hydra.searchpath=") for a in argv):
        return argv
    override = "hydra.searchpath=[" + ",".join(f"file://{d}" for d in env) + "]"
    # Hydra's argparse takes the overrides as one run of positionals: put ours beside the first one (or first of all)
    i = 0
    while i < len(argv):
        if argv[i] in _HYDRA_VALUE_OPTIONS or (argv[i] in ("--info", "-i") and i + 1 < len(argv)
                                               and argv[i + 1] in _HYDRA_INFO_CHOICES):
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            break
    return argv[:i] + [override] + argv[i:] if i < len(argv) else [override] + argv


def _config_roots(argv: list[str]) -> list[str]:
    return [CONFIG_DIR] + user_config_dirs(argv)


def resolve_work_dir(cfg: DictConfig) -> str:
    """The run's folder: ``work_dir`` if given, else Hydra's run directory; created, absolute."""
    work_dir = cfg.get("work_dir")
    if not work_dir:
        from hydra.core.hydra_config import HydraConfig

        work_dir = HydraConfig.get().runtime.output_dir
    work_dir = os.path.abspath(str(work_dir))
    os.makedirs(work_dir, exist_ok=True)
    return work_dir


def report_and_exit(err: Exception, code: int = 2) -> None:
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(code)


def group_choices(group: str, roots: list[str] | None = None) -> list[str]:
    """Options of a config group in every config folder (``<root>/<group>/**/*.yaml`` as ``a/b`` names), sorted."""
    out = set()
    for root_dir in roots or [CONFIG_DIR]:
        base = os.path.join(root_dir, group)
        for root, _, files in os.walk(base):
            for name in files:
                if name.endswith(".yaml"):
                    out.add(os.path.relpath(os.path.join(root, name), base)[: -len(".yaml")])
    return sorted(out)


def check_group_overrides(argv: list[str]) -> None:
    """Exit with a clear message when a ``group=option`` override names an option that does not exist.

    Hydra lists the valid options only for top-level names; nested ones (``model=dynvit/vit_huge``) and experiments
    get just "Could not find", so the check is done here, before Hydra runs. The packaged configs and the user's
    folders (``FORGE_CONFIG_DIR``, ``--config-dir``) are both searched.
    """
    try:
        roots = _config_roots(argv)
    except ValueError as err:
        report_and_exit(err)
    groups = {d for r in roots for d in os.listdir(r) if os.path.isdir(os.path.join(r, d)) and d != "hydra"}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~").split("@", 1)[0]
        if key not in groups or value in ("", "null"):
            continue
        choices = group_choices(key, roots)
        for option in value.split(","):
            if option.startswith(("choice(", "range(", "glob(")):
                break
            if option not in choices:
                report_and_exit(
                    ValueError(f"{key}={option!r} is not an option of the config group '{key}'; valid choices: "
                               + ", ".join(choices))
                )
