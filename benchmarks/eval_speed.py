"""Evaluation speed: pycocotools vs faster-coco-eval vs ``forge-eval coco``, each a whole fresh process.

Generates a seeded COCO-val-sized random case (``tests/forge/evaluation/random_cases.py``: polygons, RLE, crowd
regions, non-consecutive ids, tied scores), writes it as json files, then times in fresh processes (start-up,
imports, json loading, evaluation, summary):

* **pycocotools**: ``COCO(gt)``, ``loadRes(dt)``, ``COCOeval`` ``evaluate()``, ``accumulate()``, ``summarize()``;
* **faster-coco-eval**: the same five calls with its ``COCO`` / ``COCOeval_faster`` (its own usage, not exact);
* **forge-eval**: ``python -m forge.cli.eval coco --gt GT --dt DT --iou IOU --json OUT`` (validation and the
  pycocotools-exact precision fix included).

Every process starts with a warm bytecode cache (``PYTHONPYCACHEPREFIX`` under the temporary folder, also where
``PYTHONDONTWRITEBYTECODE`` is set), as for installed packages.

It prints a markdown table (seconds, ratios, and whether all 12 summary numbers equal pycocotools' as floats) and
writes it, with the machine line and the command, between the ``eval-speed-coco`` markers of ``--md``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_speed.py --images 5000 --repeat 3
    .venv/bin/python benchmarks/eval_speed.py --images 500 --iou bbox --md ''      # quick look, no doc update

CrowdHuman: ``benchmarks/crowdhuman_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from forge.docsection import machine_line, replace_section  # noqa: E402

SECTION = "eval-speed-coco"

PYCOCOTOOLS_SCRIPT = """
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
ev = COCOeval(gt, gt.loadRes(sys.argv[2]), sys.argv[3])
ev.evaluate(); ev.accumulate(); ev.summarize()
json.dump([float(s) for s in ev.stats], open(sys.argv[4], "w"))
"""

FASTER_COCO_EVAL_SCRIPT = """
import json, sys
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO(sys.argv[1])
ev = COCOeval_faster(gt, gt.loadRes(sys.argv[2]), sys.argv[3])
ev.evaluate(); ev.accumulate(); ev.summarize()
json.dump([float(s) for s in ev.stats], open(sys.argv[4], "w"))
"""


# Bytecode is cached (outside the tree) as an installed package's would be, even where PYTHONDONTWRITEBYTECODE is
# set: otherwise every run of forge-eval would compile its modules while the site-packages of the others are cached.
PYCACHE = os.path.join(tempfile.gettempdir(), "paperforge-bench-pycache")
WARM_UP = "import forge.cli.eval, forge.evaluation.coco.engine, forge.evaluation.lvis, faster_coco_eval, pycocotools"


def bench_env() -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONPYCACHEPREFIX=PYCACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("CI", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _timed(cmd: list[str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``cmd`` as a fresh process (cpu: user + system of the child, all its threads)."""
    env = bench_env()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in runs), min(r[1] for r in runs)


def make_files(workdir: str, images: int, classes: int, extra_dets: int, seed: int) -> dict:
    """Write the random case as ``gt.json``, ``dt_bbox.json``, ``dt_segm.json`` (reused if already there)."""
    paths = {key: os.path.join(workdir, f"{key}.json") for key in ("gt", "dt_bbox", "dt_segm")}
    meta_path = os.path.join(workdir, "case.json")
    spec = {"images": images, "classes": classes, "extra_dets": extra_dets, "seed": seed}
    if os.path.isfile(meta_path) and all(os.path.isfile(p) for p in paths.values()):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("spec") == spec:
            return {"paths": paths, "info": meta["info"]}
    from tests.forge.evaluation.random_cases import make_coco_case

    tic = time.perf_counter()
    case = make_coco_case(seed=seed, num_images=images, num_classes=classes, extra_dets_per_image=extra_dets)
    for key, path in paths.items():
        with open(path, "w") as f:
            json.dump(case[key], f)
    info = {
        "images": images,
        "annotations": len(case["gt"]["annotations"]),
        "detections": len(case["dt_bbox"]),
        "generate_s": time.perf_counter() - tic,
    }
    with open(meta_path, "w") as f:
        json.dump({"spec": spec, "info": info}, f)
    return {"paths": paths, "info": info}


def coco_section(workdir: str, paths: dict, iou_types: list[str], repeat: int, ref_repeat: int) -> list[dict]:
    _timed([sys.executable, "-c", WARM_UP])  # fills the bytecode cache
    rows = []
    for iou in iou_types:
        dt = paths["dt_" + iou]
        outs = {k: os.path.join(workdir, f"{k}_{iou}.json") for k in ("ref", "fce", "ours")}
        t_ref = _best(
            [
                _timed([sys.executable, "-c", PYCOCOTOOLS_SCRIPT, paths["gt"], dt, iou, outs["ref"]])
                for _ in range(ref_repeat)
            ]
        )
        fce_runs, our_runs = [], []
        for _ in range(repeat):  # interleaved, so that load changes hit both alike
            fce_runs.append(_timed([sys.executable, "-c", FASTER_COCO_EVAL_SCRIPT, paths["gt"], dt, iou, outs["fce"]]))
            cmd = [sys.executable, "-m", "forge.cli.eval", "coco", "--gt", paths["gt"], "--dt", dt, "--iou", iou]
            our_runs.append(_timed([*cmd, "--json", outs["ours"]]))
        t_fce, t_ours = _best(fce_runs), _best(our_runs)
        stats = {}
        for k, path in outs.items():
            with open(path) as f:
                data = json.load(f)
            stats[k] = data["stats"] if isinstance(data, dict) else data
        rows.append(
            {
                "iou": iou,
                "pycocotools_s": t_ref[0],
                "fce_s": t_fce[0],
                "forge_s": t_ours[0],
                "fce_cpu_s": t_fce[1],
                "forge_cpu_s": t_ours[1],
                "identical": stats["ours"] == stats["ref"],
                "fce_identical": stats["fce"] == stats["ref"],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| COCO | pycocotools (s) | faster-coco-eval (s) | `forge-eval coco` (s) | forge vs pycocotools "
        "| forge / faster-coco-eval: wall (CPU) | 12 stats = pycocotools (forge / faster-coco-eval) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        same = f"{'yes' if r['identical'] else 'NO'} / {'yes' if r['fce_identical'] else 'no'}"
        lines.append(
            f"| {r['iou']} | {r['pycocotools_s']:.1f} | {r['fce_s']:.1f} | {r['forge_s']:.1f} | "
            f"{r['pycocotools_s'] / r['forge_s']:.1f}x faster | {r['forge_s'] / r['fce_s']:.2f} "
            f"({r['forge_cpu_s'] / r['fce_cpu_s']:.2f}) | {same} |"
        )
    return "\n".join(lines)


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("pycocotools", "faster-coco-eval", "numpy"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images in the random case (COCO val: 5000)")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument(
        "--extra-dets",
        type=int,
        default=40,
        help="low-score detections added per image (model long tail; ~50 detections/image total)",
    )
    parser.add_argument("--iou", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (faster-coco-eval and forge-eval)")
    parser.add_argument("--ref-repeat", type=int, default=1, help="best of N runs of pycocotools (slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="keep (and reuse) the generated files here (default: a temporary folder)")
    parser.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="'' to skip the doc")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        files = make_files(workdir, args.images, args.classes, args.extra_dets, args.seed)
        rows = coco_section(workdir, files["paths"], args.iou, args.repeat, args.ref_repeat)
    info = files["info"]
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_speed.py " + " ".join(argv or sys.argv[1:])
    body = "\n".join(
        [
            f"Machine: {machine_line()}; {_versions()}, `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}`.",
            "",
            f"Case: {info['images']} images, {info['annotations']:,} annotations, {info['detections']:,} detections "
            f"per IoU type (seed {args.seed}). Times: wall-clock seconds, best of {args.repeat} whole processes "
            f"(pycocotools: best of {args.ref_repeat}), faster-coco-eval and forge-eval interleaved; CPU = user + "
            "system seconds of the process (all threads), less sensitive to other jobs on a shared machine.",
            "",
            f"Command: `{command.strip()}`",
            "",
            table(rows),
        ]
    )
    print(body)
    if args.md:
        replace_section(args.md, SECTION, body)
        print(f"\nwrote section {SECTION!r} of {args.md}")


if __name__ == "__main__":
    main()
