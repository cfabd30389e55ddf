"""Evaluation speed: pycocotools vs ``forge-eval coco`` (whole command, process start included).

Generates a seeded COCO-val-sized random case (``tests/forge/evaluation/random_cases.py``: polygons, RLE, crowd
regions, non-consecutive ids, tied scores), writes it as json files, then times in fresh processes:

* **pycocotools**: ``COCO(gt)``, ``loadRes(dt)``, ``evaluate()``, ``accumulate()``, ``summarize()``;
* **forge-eval**: ``python -m forge.cli.eval coco --gt GT --dt DT --iou IOU --json OUT`` (validation included).

It prints a markdown table (seconds, speed-up, and whether all 12 summary numbers are identical).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_speed.py --images 5000
    .venv/bin/python benchmarks/eval_speed.py --images 500 --iou bbox      # quick look

CrowdHuman: ``--crowdhuman`` runs the section in :func:`crowdhuman_section` (see there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PYCOCOTOOLS_SCRIPT = """
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
ev = COCOeval(gt, gt.loadRes(sys.argv[2]), sys.argv[3])
ev.evaluate(); ev.accumulate(); ev.summarize()
json.dump([float(s) for s in ev.stats], open(sys.argv[4], "w"))
"""


def _timed(cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr}")
    return elapsed


def make_files(workdir: str, images: int, classes: int, extra_dets: int, seed: int) -> dict:
    from tests.forge.evaluation.random_cases import make_coco_case

    tic = time.perf_counter()
    case = make_coco_case(seed=seed, num_images=images, num_classes=classes, extra_dets_per_image=extra_dets)
    paths = {}
    for key in ("gt", "dt_bbox", "dt_segm"):
        paths[key] = os.path.join(workdir, f"{key}.json")
        with open(paths[key], "w") as f:
            json.dump(case[key], f)
    info = {
        "images": images,
        "annotations": len(case["gt"]["annotations"]),
        "detections": len(case["dt_bbox"]),
        "generate_s": time.perf_counter() - tic,
    }
    return {"paths": paths, "info": info}


def coco_section(workdir: str, paths: dict, iou_types: list[str], repeat: int) -> list[dict]:
    rows = []
    for iou in iou_types:
        ref_out, our_out = os.path.join(workdir, f"ref_{iou}.json"), os.path.join(workdir, f"ours_{iou}.json")
        dt = paths["dt_" + iou]
        t_ref = min(
            _timed([sys.executable, "-c", PYCOCOTOOLS_SCRIPT, paths["gt"], dt, iou, ref_out]) for _ in range(repeat)
        )
        t_ours = min(
            _timed(
                [
                    sys.executable,
                    "-m",
                    "forge.cli.eval",
                    "coco",
                    "--gt",
                    paths["gt"],
                    "--dt",
                    dt,
                    "--iou",
                    iou,
                    "--json",
                    our_out,
                ]
            )
            for _ in range(repeat)
        )
        with open(ref_out) as f:
            ref = json.load(f)
        with open(our_out) as f:
            ours = json.load(f)["stats"]
        rows.append({"iou": iou, "pycocotools_s": t_ref, "forge_s": t_ours, "identical": ref == ours})
    return rows


# ------------------------------------------------------------------------------------------------ CrowdHuman
def crowdhuman_section(images: int, workdir: str) -> str | None:
    """CrowdHuman timings, added by the CrowdHuman evaluator's author.

    Contract: ``benchmarks/crowdhuman_speed.py`` defines ``run(images: int, workdir: str) -> str`` returning a
    markdown table; this function imports it when present (``None`` otherwise) and the table is printed after the
    COCO one.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crowdhuman_speed.py")
    if not os.path.exists(path):
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("crowdhuman_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(images=images, workdir=workdir)


def _machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}"


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
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crowdhuman", action="store_true", help="also run benchmarks/crowdhuman_speed.py")
    parser.add_argument("--workdir", help="keep the generated files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        files = make_files(workdir, args.images, args.classes, args.extra_dets, args.seed)
        info = files["info"]
        print(f"machine: {_machine()}")
        print(
            f"case: {info['images']} images, {info['annotations']} annotations, {info['detections']} detections "
            f"per IoU type (generated in {info['generate_s']:.0f} s)\n"
        )
        rows = coco_section(workdir, files["paths"], args.iou, args.repeat)
        print("| COCO | pycocotools 2.0.11 (s) | `forge-eval coco` (s) | speed-up | 12 stats identical |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['iou']} | {r['pycocotools_s']:.1f} | {r['forge_s']:.1f} | "
                f"{r['pycocotools_s'] / r['forge_s']:.1f}x | {'yes' if r['identical'] else 'NO'} |"
            )
        if args.crowdhuman:
            table = crowdhuman_section(args.images, workdir)
            print("\n" + (table if table else "(benchmarks/crowdhuman_speed.py not found: CrowdHuman skipped)"))


if __name__ == "__main__":
    main()
