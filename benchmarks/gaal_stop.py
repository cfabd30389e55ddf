"""GAAL's stop node: the fixed ``stop_epochs`` against the automatic stop (``stop_epochs="auto"``) on the bundled sets.

The paper and the official code stop training the generators where their loss flattens (chosen by eye per data
set); :func:`anomaly.gaal.loss_flattened` makes that a rule (moving mean over ``auto_stop_window`` epochs changes by
at most ``auto_stop_tol``, relative; at most ``max_stop_epochs``). This measures, for SO-GAAL and MO-GAAL with the
model configs' settings, whether the rule helps over the fixed default: ROC-AUC (mean ± std over seeds), the number
of generator epochs the rule chose and the fit time, on ``breast_cancer`` and every shared ADBench set (shuttle left
out by default: one MO-GAAL fit takes about 8 minutes on 2 cores). Writes its section of ``docs/benchmarks.md``.

    OMP_NUM_THREADS=1 nice python benchmarks/gaal_stop.py          # about 5 CPU minutes
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anomaly.data import list_adbench, load_breast_cancer, load_npz  # noqa: E402
from forge.docsection import command_line, machine_line, mean_std, publish_section  # noqa: E402
from forge.evaluation.outlier import roc_auc  # noqa: E402

SECTION = "anomaly-gaal-auto-stop"
TITLE = "### anomaly: GAAL automatic stop"


def datasets(select: str, exclude: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``breast_cancer`` and the shared ADBench sets whose names contain one of the ``select`` substrings (``all``:
    every set) and none of the ``exclude`` ones."""
    def keys(text: str) -> list[str]:
        return [k.strip().lower() for k in text.split(",") if k.strip()]

    out = [("breast_cancer", *load_breast_cancer())] + [(f.stem, *load_npz(f)) for f in list_adbench()]
    if select != "all":
        out = [d for d in out if any(k in d[0].lower() for k in keys(select))]
    return [d for d in out if not any(k in d[0].lower() for k in keys(exclude))]


def run(args) -> dict:
    """``{data set: {(variant, stop): {"auc", "time", "epochs", "reached": [per seed]}}}``."""
    import torch

    from anomaly.gaal import MOGAAL, SOGAAL

    torch.set_num_threads(1)
    out: dict = {}
    for name, X, y in datasets(args.datasets, args.exclude):
        res: dict = {"shape": X.shape}
        for cls in (SOGAAL, MOGAAL):
            for stop in (args.stop_epochs, "auto"):
                r = res.setdefault((cls.__name__, stop), {"auc": [], "time": [], "epochs": [], "reached": []})
                for seed in range(args.seeds):
                    t = time.perf_counter()
                    m = cls(stop_epochs=stop, auto_stop_window=args.window, auto_stop_tol=args.tol,
                            max_stop_epochs=args.max_stop_epochs, random_state=seed, progress=False,
                            device="cpu").fit(X)
                    r["time"].append(time.perf_counter() - t)
                    r["auc"].append(roc_auc(y, m.decision_scores_))
                    r["epochs"].append(m.stop_epochs_)
                    r["reached"].append(bool(m.auto_stop_reached_) if stop == "auto" else True)
        out[name] = res
        print(f"[gaal-stop] {name} {X.shape}: " + ", ".join(
            f"{v} {s}: {np.mean(r['auc']):.3f} ({np.mean(r['epochs']):.0f} ep)"
            for (v, s), r in ((k, r) for k, r in res.items() if k != "shape")), flush=True)
    return out


def render(results: dict, args, wall: float) -> str:
    fixed = args.stop_epochs
    lines = [
        f"ROC-AUC, mean ± std over {args.seeds} seeds (0..{args.seeds - 1}); fixed = `stop_epochs: {fixed}` (the "
        f"configs' default), auto = `stop_epochs: auto` with window {args.window}, tolerance {args.tol}, at most "
        f"{args.max_stop_epochs} generator epochs (3x as many epochs in all either way); 'ep' = generator epochs "
        f"used (mean; auto: the rule's choice, '*' where a seed hit the cap). Excluded: {args.exclude or 'none'}. "
        f"{machine_line()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; wall time {wall:.0f} s.",
        "",
        "| data set | n × d | SO fixed | SO auto | SO auto ep | MO fixed | MO auto | MO auto ep | time SO f/a (s) | "
        "time MO f/a (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    gain: dict = {"SOGAAL": [], "MOGAAL": []}
    for name, res in results.items():
        cells = []
        for v in ("SOGAAL", "MOGAAL"):
            f, a = res[(v, fixed)], res[(v, "auto")]
            gain[v].append(np.mean(a["auc"]) - np.mean(f["auc"]))
            cap = "" if all(a["reached"]) else "*"
            cells += [mean_std(f["auc"]), mean_std(a["auc"]), f"{np.mean(a['epochs']):.0f}{cap}"]
        times = [f"{np.mean(res[(v, fixed)]['time']):.2f} / {np.mean(res[(v, 'auto')]['time']):.2f}"
                 for v in ("SOGAAL", "MOGAAL")]
        n, d = res["shape"]
        lines.append(f"| {name} | {n} × {d} | " + " | ".join(cells + times) + " |")
    means = {v: {s: float(np.mean([np.mean(r[(v, s)]["auc"]) for r in results.values()])) for s in (fixed, "auto")}
             for v in gain}
    lines.append("| **mean** | | " + " | ".join(
        x for v in gain for x in (f"**{means[v][fixed]:.3f}**", f"**{means[v]['auto']:.3f}**", "")) + " | | |")
    lines.append("")
    for v, g in gain.items():
        g = np.asarray(g)
        lines.append(f"* {v}: auto − fixed = {g.mean():+.3f} mean ROC-AUC over {len(g)} sets; auto better by more "
                     f"than 0.01 on {(g > 0.01).sum()}, worse by more than 0.01 on {(g < -0.01).sum()}.")
    lines += ["", command_line("benchmarks/gaal_stop.py", args.argv)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--stop-epochs", type=int, default=20, help="the fixed stop (the configs' default)")
    ap.add_argument("--window", type=int, default=5, help="auto_stop_window (the configs' default)")
    ap.add_argument("--tol", type=float, default=0.01, help="auto_stop_tol (the configs' default)")
    ap.add_argument("--max-stop-epochs", type=int, default=100, help="max_stop_epochs (the configs' default)")
    ap.add_argument("--datasets", default="all", help="comma-separated substrings of data set names, or 'all'")
    ap.add_argument("--exclude", default="shuttle", help="comma-separated substrings of data set names to skip")
    ap.add_argument("--doc", default="docs/benchmarks.md", help="write the section here ('' to only print)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.seeds < 1:
        ap.error(f"--seeds must be >= 1, got {args.seeds}")
    t0 = time.perf_counter()
    body = render(run(args), args, time.perf_counter() - t0)
    publish_section(args.doc, SECTION, body, title=TITLE)


if __name__ == "__main__":
    main()
