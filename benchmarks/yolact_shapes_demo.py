"""Results of ``yolact/shapes`` runs (``make demo-yolact`` and its variants) into docs/benchmarks.md and docs/img.

    python benchmarks/yolact_shapes_demo.py --train                      # run make demo-yolact, then write
    python benchmarks/yolact_shapes_demo.py "make demo-yolact=work_dirs/yolact/shapes" "lr 1e-3=work_dirs/lr1e-3"

Each run folder (as ``forge-train`` leaves it: ``config.yaml``, ``metrics.json``, ``plots/``, ``*/vis_data``) gives
one table row: COCO mask and box AP on the shapes val split, iterations, the wall time from the saved config to the
final metrics (training + evaluation), and what its config changes from ``experiment=yolact/shapes`` (computed by
comparing the saved config with a freshly composed one). The rows go between ``<!-- yolact-shapes:begin/end -->``
in docs/benchmarks.md; the first run (or ``--figures``) supplies ``docs/img/yolact_shapes_val.png`` (its last
ground truth | prediction grid) and ``docs/img/yolact_shapes_training.png`` (its ``plots/training.png``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

from omegaconf import DictConfig, OmegaConf

from forge.docsection import machine_line, replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "yolact-shapes"
DEFAULT_RUN = os.path.join("work_dirs", "yolact", "shapes")
# what decides a result; paths, logging and data location are left out of the comparison
COMPARED = ("seed", "model", "loss", "schedule", "pipeline", "runtime.precision")
IGNORED = ("schedule.num_workers",)


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list):
        if all(not isinstance(v, dict | list) for v in node):
            return {prefix: node}
        out = {}
        for i, v in enumerate(node):
            out.update(_flat(v, f"{prefix}.{i}"))
        return out
    return {prefix: node}


def _selected(cfg: DictConfig) -> dict[str, object]:
    out = {}
    for key in COMPARED:
        node = OmegaConf.select(cfg, key, default=None)
        plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        out.update(_flat(plain, key) if isinstance(plain, dict) else {key: plain})
    return {k: v for k, v in out.items() if not k.startswith(IGNORED)}


def default_config() -> DictConfig:
    """``experiment=yolact/shapes`` as forge-train composes it."""
    from hydra import compose, initialize_config_dir

    import forge.config  # noqa: F401  (forge.* resolvers)
    from forge.cli.common import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["experiment=yolact/shapes"])


def changes(run_cfg: DictConfig, default: DictConfig) -> list[str]:
    """``key=value`` for every compared setting in which the run differs from the default (sorted)."""
    ours, ref = _selected(run_cfg), _selected(default)
    return [f"{k}={ours.get(k, '(absent)')}" for k in sorted(set(ours) | set(ref)) if ours.get(k) != ref.get(k)]


def read_run(run_dir: str, default: DictConfig) -> dict:
    """Metrics, iterations, wall time and config changes of one finished run folder."""
    config, metrics_file = os.path.join(run_dir, "config.yaml"), os.path.join(run_dir, "metrics.json")
    for path in (config, metrics_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{run_dir}: no {os.path.basename(path)} (not a finished forge-train run)")
    with open(metrics_file) as f:
        metrics = json.load(f)
    cfg = OmegaConf.load(config)
    return dict(metrics=metrics, iters=metrics.get("_iter"), changes=changes(cfg, default),
                wall=os.path.getmtime(metrics_file) - os.path.getmtime(config))


def _ap(m: dict, kind: str) -> str:
    keys = [f"coco/{kind}_mAP", f"coco/{kind}_mAP_50", f"coco/{kind}_mAP_75"]
    return " / ".join("n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in keys)


def table(runs: list[tuple[str, dict]]) -> list[str]:
    lines = ["| run | change from `yolact/shapes` | iterations | train + eval | mask AP / AP50 / AP75 | "
             "box AP / AP50 / AP75 |", "|---|---|---:|---:|---|---|"]
    for label, r in runs:
        minutes, seconds = divmod(round(r["wall"]), 60)
        change = " ".join(f"`{c}`" for c in r["changes"]) or "—"
        lines.append(f"| {label} | {change} | {r['iters']:,} | {minutes} min {seconds} s | "
                     f"{_ap(r['metrics'], 'segm')} | {_ap(r['metrics'], 'bbox')} |")
    return lines


def copy_figures(run_dir: str, img_dir: str) -> list[str]:
    """The run's last validation grid and its training curves into ``img_dir``; returns the written paths."""
    grids = sorted(glob.glob(os.path.join(run_dir, "*", "vis_data", "vis_image", "*.png")), key=os.path.getmtime)
    curves = os.path.join(run_dir, "plots", "training.png")
    if not grids or not os.path.isfile(curves):
        raise FileNotFoundError(f"{run_dir}: needs */vis_data/vis_image/*.png and plots/training.png "
                                "(runtime.num_vis_images > 0, a finished training)")
    os.makedirs(img_dir, exist_ok=True)
    written = []
    for src, name in ((grids[-1], "yolact_shapes_val.png"), (curves, "yolact_shapes_training.png")):
        shutil.copyfile(src, os.path.join(img_dir, name))
        written.append(os.path.join(img_dir, name))
    return written


def _label_and_dir(spec: str) -> tuple[str, str]:
    label, sep, path = spec.rpartition("=")
    return (label, path) if sep else (os.path.basename(os.path.normpath(spec)), spec)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help=f"LABEL=RUN_DIR or RUN_DIR (default: make demo-yolact={DEFAULT_RUN})")
    p.add_argument("--train", action="store_true", help="run tools/demo_yolact.sh into the first run folder first")
    p.add_argument("--figures", help="run folder whose grid and curves become the docs figures (default: the first)")
    p.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    p.add_argument("--img-dir", default=os.path.join(ROOT, "docs", "img"))
    args = p.parse_args(argv)
    specs = [_label_and_dir(s) for s in (args.runs or [f"make demo-yolact={DEFAULT_RUN}"])]
    if args.train:
        env = dict(os.environ, WORK_DIR=specs[0][1])
        subprocess.run([os.path.join(ROOT, "tools", "demo_yolact.sh"), "overwrite=true"], check=True, env=env)
    default = default_config()
    runs = [(label, read_run(path, default)) for label, path in specs]
    lines = table(runs)
    print("\n".join(lines))
    figures = copy_figures(args.figures or specs[0][1], args.img_dir)
    given = argv if argv is not None else sys.argv[1:]
    md_dir = os.path.dirname(os.path.abspath(args.md))
    rel = [os.path.relpath(f, md_dir) for f in figures]
    body = "\n".join([
        f"Made on {machine_line()} (the machine this script ran on; with `--train` the runs ran there too). "
        "Wall time: from the run's saved config to its final metrics.",
        "",
        f"Command: `{' '.join(['python benchmarks/yolact_shapes_demo.py', *given])}`",
        "",
        *lines,
        "",
        f"![ground truth and predictions on shapes val images]({rel[0]})",
        "",
        f"![training losses and learning rate]({rel[1]})",
    ])
    replace_section(args.md, SECTION, body)
    print(f"\nwrote section {SECTION} of {args.md} and {', '.join(figures)}")


if __name__ == "__main__":
    main()
