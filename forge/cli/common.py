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

# forge/configs, shipped inside the package; FORGE_CONFIG_DIR overrides it
CONFIG_DIR = os.environ.get(
    "FORGE_CONFIG_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
)


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


def group_choices(group: str) -> list[str]:
    """Options of a config group: ``configs/<group>/**/*.yaml`` as ``a/b`` names, sorted."""
    base = os.path.join(CONFIG_DIR, group)
    out = []
    for root, _, files in os.walk(base):
        for name in files:
            if name.endswith(".yaml"):
                out.append(os.path.relpath(os.path.join(root, name), base)[: -len(".yaml")])
    return sorted(out)


def check_group_overrides(argv: list[str]) -> None:
    """Exit with a clear message when a ``group=option`` override names an option that does not exist.

    Hydra lists the valid options only for top-level names; nested ones (``model=dynvit/vit_huge``) and experiments
    get just "Could not find", so the check is done here, before Hydra runs.
    """
    groups = {d for d in os.listdir(CONFIG_DIR) if os.path.isdir(os.path.join(CONFIG_DIR, d)) and d != "hydra"}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~").split("@", 1)[0]
        if key not in groups or value in ("", "null"):
            continue
        choices = group_choices(key)
        for option in value.split(","):
            if option.startswith(("choice(", "range(", "glob(")):
                break
            if option not in choices:
                report_and_exit(
                    ValueError(f"{key}={option!r} is not an option of the config group '{key}'; valid choices: "
                               + ", ".join(choices))
                )
