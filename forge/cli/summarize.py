"""``forge-summarize SWEEP_DIR``: one table of a sweep's runs — their overrides and final metrics.

Each run folder of a Hydra multirun holds ``.hydra/overrides.yaml`` (what was swept) and ``metrics.json`` (written
by every forge run). Runs without ``metrics.json`` (crashed or still running) are listed as such, not dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import yaml


def collect(sweep_dir: str) -> list[dict]:
    """One record per run folder under ``sweep_dir``: ``{'run', 'overrides': {...}, 'metrics': {...} | None}``."""
    if not os.path.isdir(sweep_dir):
        raise FileNotFoundError(f"sweep folder {sweep_dir!r} does not exist")
    runs = []
    for root, dirs, _files in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if d not in (".submitit",))
        overrides_file = os.path.join(root, ".hydra", "overrides.yaml")
        if not os.path.isfile(overrides_file):
            continue
        with open(overrides_file) as f:
            overrides = dict(o.split("=", 1) for o in (yaml.safe_load(f) or []) if "=" in o)
        metrics_file = os.path.join(root, "metrics.json")
        metrics = None
        if os.path.isfile(metrics_file):
            with open(metrics_file) as f:
                metrics = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
        runs.append(dict(run=os.path.relpath(root, sweep_dir), overrides=overrides, metrics=metrics))
    runs.sort(key=lambda r: (len(r["run"]), r["run"]))
    return runs


def to_rows(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Columns: run, the overrides that differ between runs (all of them for a single run), status, metrics."""
    keys = sorted({k for r in runs for k in r["overrides"]})
    swept = [k for k in keys if len(runs) == 1 or len({str(x["overrides"].get(k)) for x in runs}) > 1]
    metric_keys = sorted({k for r in runs for k in (r["metrics"] or {})})
    header = ["run", *swept, "status", *metric_keys]
    rows = []
    for r in runs:
        row = [r["run"], *(str(r["overrides"].get(k, "")) for k in swept)]
        row.append("done" if r["metrics"] is not None else "(no metrics)")
        for k in metric_keys:
            v = (r["metrics"] or {}).get(k)
            row.append(f"{v:.4f}" if isinstance(v, float) else "" if v is None else str(v))
        rows.append(row)
    return header, rows


def format_markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="forge-summarize", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a multirun folder, e.g. work_dirs/multirun/<experiment>/<time>")
    parser.add_argument("--csv", help="also write the table as CSV to this path")
    parser.add_argument("--markdown", help="also write the table as Markdown to this path")
    args = parser.parse_args(argv)
    try:
        runs = collect(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not runs:
        print(f"error: no runs (folders with .hydra/overrides.yaml) under {args.sweep_dir!r}", file=sys.stderr)
        sys.exit(2)
    header, rows = to_rows(runs)
    table = format_markdown(header, rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])


if __name__ == "__main__":
    main()
