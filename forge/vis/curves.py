"""Plots of the scalars mmengine's ``LocalVisBackend`` writes as JSON lines (``vis_data/scalars.json``)."""

from __future__ import annotations

import json
import os
from collections import defaultdict

# values logged every iteration that are worth a curve; validation metrics are plotted against their own step
_SKIP = ("data_time", "time", "memory", "iter", "epoch", "step")


def read_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    """``{name: [(step, value), ...]}`` from a JSON-lines scalars file; bad lines are reported, not skipped."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from err
            step = int(record.get("step", record.get("iter", lineno)))
            for key, value in record.items():
                if key in _SKIP or not isinstance(value, int | float):
                    continue
                series[key].append((step, float(value)))
    return dict(series)


def plot_scalars(path: str, out_dir: str) -> list[str]:
    """Write ``training.png`` (losses and lr) and ``validation.png`` (metrics) into ``out_dir``; returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_scalars(path)
    if "lr" in series:
        # mmengine logs the configured base_lr beside the scheduled lr: a flat line that only takes up a panel
        series.pop("base_lr", None)
    train = {k: v for k, v in series.items() if "loss" in k or k.endswith("lr") or k == "grad_norm"}
    val = {k: v for k, v in series.items() if k not in train}
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, group in (("training", train), ("validation", val)):
        if not group:
            continue
        fig, axes = plt.subplots(1, len(group), figsize=(4 * len(group), 3.2), squeeze=False)
        for ax, (key, points) in zip(axes[0], sorted(group.items())):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out = os.path.join(out_dir, f"{name}.png")
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written
