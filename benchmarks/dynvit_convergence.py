"""Convergence of softmax vs ReLU + LayerNorm vs depth-wise attention at the same budget, over several seeds.

The paper (Zhou, Loy, Dai; arXiv 2309.10713) reports that ReLU + LayerNorm converges faster and ends better than
softmax, and that the depth-wise ViT is cheaper at comparable accuracy. This measures both claims at small scale,
whatever they show: every (variant, seed) is one ``forge-train`` run of the variant's experiment
(``dynvit/digits_{softmax,relu_ln,dw}``: same model size, schedule and data, only the attention differs), validated
after every epoch; the per-epoch top-1 accuracy is read from the run's ``vis_data/scalars.json``.

    python benchmarks/dynvit_convergence.py                                # digits, 3 variants x 3 seeds, 30 epochs
    python benchmarks/dynvit_convergence.py --dataset folder --root /data/tiny --num-classes 10 --img-size 32

Writes a PNG (accuracy against epoch, mean and min-max band over seeds; training loss) and a markdown table to
``--md`` (default ``docs/benchmarks.md``), and replaces the table between the convergence markers of
``--doc`` (default ``docs/dynvit.md``) when that file has them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

from forge.docsection import machine_line, replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
EXPERIMENTS = {"softmax": "dynvit/digits_softmax", "relu_ln": "dynvit/digits_relu_ln", "dw": "dynvit/digits_dw"}
SECTION = "dynvit-convergence"
TITLE = "## dynvit: convergence of softmax vs ReLU+LayerNorm vs depth-wise attention"


def run_one(variant: str, seed: int, args, work_dir: str) -> dict:
    """Train one (variant, seed); returns per-epoch val top-1, the training-loss log and the wall time."""
    overrides = [
        f"experiment={EXPERIMENTS[variant]}",
        f"seed={seed}",
        f"schedule.max_epochs={args.epochs}",
        "schedule.val_interval=1",
        f"schedule.num_workers={args.num_workers}",
        "runtime.vis.tensorboard=false",
        "runtime.num_vis_images=0",
        f"runtime.checkpoint.interval={args.epochs}",
        "runtime.checkpoint.save_best=null",
        f"work_dir={work_dir}",
    ]
    if args.dataset == "folder":
        overrides += [
            "dataset=folder",
            "pipeline=timm_default",
            f"dataset.root={args.root}",
            f"dataset.num_classes={args.num_classes}",
            f"pipeline.img_size={args.img_size}",
            "dataset.in_chans=3",
        ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.time()
    proc = subprocess.run([os.path.join(BIN, "forge-train"), *overrides], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} seed {seed} failed:\n{proc.stderr[-3000:]}")
    scalars = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))
    if not scalars:
        raise RuntimeError(f"{variant} seed {seed}: no scalars.json under {work_dir}")
    acc: dict[int, float] = {}
    loss: list[tuple[int, float]] = []
    with open(scalars[-1]) as f:
        for line in f:
            record = json.loads(line)
            if "accuracy/top1" in record:
                acc[int(record["step"])] = float(record["accuracy/top1"])
            elif "loss" in record:
                loss.append((int(record["step"]), float(record["loss"])))
    epochs = sorted(acc)
    if epochs != list(range(1, args.epochs + 1)):
        raise RuntimeError(f"{variant} seed {seed}: validated at epochs {epochs}, expected 1..{args.epochs}")
    schedule = _schedule_summary(os.path.join(work_dir, "config.yaml"))
    return dict(acc=[acc[e] for e in epochs], loss=loss, wall=wall, schedule=schedule)


def _schedule_summary(config_path: str) -> str:
    """What the run trained with (the saved config), so that every run of a table is seen to share it."""
    from omegaconf import OmegaConf

    s = OmegaConf.load(config_path).schedule
    return (f"{s.optimizer._target_.rsplit('.', 1)[-1]} lr {s.lr:g}, batch {s.batch_size}, weight decay "
            f"{s.optimizer.weight_decay:g}, {len(s.schedulers)} schedulers (warm-up, cosine)")


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _first_epoch_reaching(curve: list[float], threshold: float) -> int | None:
    return next((i + 1 for i, a in enumerate(curve) if a >= threshold), None)


def make_table(results: dict, epochs: int, threshold: float) -> str:
    marks = sorted({e for e in (1, 3, 5, 10, epochs // 2, epochs) if 1 <= e <= epochs})
    head = ["variant"] + [f"top-1 @ ep {e}" for e in marks] + ["best top-1", f"epochs to {threshold:g}%", "s / run"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for variant, runs in results.items():
        cells = [variant]
        for e in marks:
            cells.append(_mean_std([r["acc"][e - 1] for r in runs]))
        cells.append(_mean_std([max(r["acc"]) for r in runs]))
        reached = [_first_epoch_reaching(r["acc"], threshold) for r in runs]
        ok = [x for x in reached if x is not None]
        cell = f"{statistics.mean(ok):.1f}" if ok else "never"
        if ok and len(ok) < len(reached):
            cell += f" ({len(ok)}/{len(reached)} seeds)"
        cells.append(cell)
        cells.append(f"{statistics.mean(r['wall'] for r in runs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, epochs: int, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    x = list(range(1, epochs + 1))
    for variant, runs in results.items():
        curves = list(zip(*(r["acc"] for r in runs), strict=True))
        mean = [statistics.mean(c) for c in curves]
        (line,) = ax_acc.plot(x, mean, label=f"{variant} (mean of {len(runs)})")
        ax_acc.fill_between(x, [min(c) for c in curves], [max(c) for c in curves], color=line.get_color(), alpha=0.2)
        steps = [s for s, _ in runs[0]["loss"]]
        losses = list(zip(*([v for _, v in r["loss"]] for r in runs), strict=True))
        ax_loss.plot(steps, [statistics.mean(v) for v in losses], color=line.get_color(), label=variant)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("val top-1 (%)")
    ax_acc.set_title(f"{title}: validation accuracy (band: min-max over seeds)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss (mean over seeds)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("digits", "folder"), default="digits")
    parser.add_argument("--root", help="folder dataset: root with train/<class>/ and val/<class>/")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--img-size", type=int, default=32, help="folder dataset: input side (patch 4)")
    parser.add_argument("--variants", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30,
                        help="budget per run (the digits schedule's own is 50; 30 keeps 9 runs near 15 min on 2 cores)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=90.0, help="accuracy for the 'epochs to' column")
    parser.add_argument("--work-root", default=os.path.join(ROOT, "work_dirs", "dynvit_convergence"))
    parser.add_argument("--png", default=os.path.join(ROOT, "docs", "img", "dynvit_convergence.png"))
    parser.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--doc", default=os.path.join(ROOT, "docs", "dynvit.md"))
    parser.add_argument("--from-results", action="store_true",
                        help="do not train: re-render the table and plot from the runs already under --work-root")
    args = parser.parse_args(argv)
    if args.dataset == "folder" and (not args.root or not args.num_classes):
        parser.error("--dataset folder needs --root and --num-classes")

    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    results_path = os.path.join(args.work_root, f"results_{args.dataset}.json")
    t_start = time.time()
    if args.from_results:
        with open(results_path) as f:
            saved = json.load(f)
        runs = saved.get("runs", saved)
        results = {v: runs[v] for v in args.variants}
        for variant, seed_runs in results.items():
            for seed, run in zip(args.seeds, seed_runs, strict=True):
                if "schedule" not in run:
                    config = os.path.join(args.work_root, args.dataset, variant, f"seed{seed}", "config.yaml")
                    run["schedule"] = _schedule_summary(config)
        total = saved.get("total_s", sum(r["wall"] for seed_runs in results.values() for r in seed_runs))
    else:
        for seed in args.seeds:
            for variant in args.variants:
                work_dir = os.path.join(args.work_root, args.dataset, variant, f"seed{seed}")
                run = run_one(variant, seed, args, work_dir)
                results[variant].append(run)
                print(f"{variant:8s} seed {seed}: final {run['acc'][-1]:.1f}  best {max(run['acc']):.1f}  "
                      f"({run['wall']:.0f} s)", flush=True)
        total = time.time() - t_start
        os.makedirs(args.work_root, exist_ok=True)
        with open(results_path, "w") as f:
            json.dump(dict(runs=results, total_s=total), f)

    schedules = {r["schedule"] for runs in results.values() for r in runs}
    if len(schedules) != 1:
        raise RuntimeError(f"the runs did not share one schedule (was a config edited meanwhile?): {schedules}")
    name = "digits" if args.dataset == "digits" else f"folder {args.root}"
    table = make_table(results, args.epochs, args.threshold)
    machine = f"{machine_line()}, {args.threads} thread(s) per run"
    png_rel = os.path.relpath(args.png, os.path.dirname(os.path.abspath(args.md)))
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--from-results"]
    cmd = "python benchmarks/dynvit_convergence.py " + " ".join(given)
    body = "\n".join([
        f"Dataset: {name}. Budget: {args.epochs} epochs per run ({schedules.pop()}), "
        f"validation after every epoch; seeds {', '.join(map(str, args.seeds))}; mean ± std over seeds "
        f"(val top-1, %). Total wall time {total / 60:.1f} min on {machine}.",
        "",
        table,
        "",
        f"![accuracy against epoch]({png_rel})",
        "",
        f"Command: `{cmd.strip()}`",
    ])
    print("\n" + table)
    plot(results, args.epochs, args.png, name)
    for path in (args.md, args.doc):
        rel = os.path.relpath(args.png, os.path.dirname(os.path.abspath(path)))
        replace_section(path, SECTION, body.replace(png_rel, rel), title=TITLE if path == args.md else None)
    print(f"\nwrote {args.png}, {args.md}, {args.doc}")


if __name__ == "__main__":
    main()
