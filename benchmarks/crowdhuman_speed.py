"""CrowdHuman evaluator speed: ``forge-eval crowdhuman`` vs CrowdDet's scripts, each as whole fresh processes.

Generates a synthetic CrowdHuman-like case (crowded people with full/visible/head boxes, ``mask`` and
``extra.ignore`` regions, boxes crossing the image border, noisy detections with duplicates and false positives),
writes it as odgt, then times, process start and file reading included:

* ours: ``python -m forge.cli.eval crowdhuman --gt GT --dt DT --box-type BOX --json OUT`` (AP + MR^-2 + JI at 10
  score thresholds; best of ``--repeat``);
* CrowdDet (``--crowddet PATH`` / ``--official PATH``, a checkout of Purkialo/CrowdDet, e.g. brought with
  ``git archive`` to /tmp, outside this tree): one process calling ``compute_APMR.compute_APMR`` and one calling
  ``compute_JI.evaluation_all`` (its own 10-process pool), run unmodified from the checkout (one run each).

CrowdDet's JI reads the ground truth embedded in the detection file (``gtboxes`` with ``box`` and ``tag``) and its
AP/MR only reads ``fbox`` from the GT; so its inputs are derived in a temporary folder: the detection lines get
``gtboxes`` built with CrowdDet's own ``misc_utils.load_gt(record, 'gtboxes', box_type, ['background', 'person'])``,
and for ``vbox`` the GT lines are copied with ``fbox`` replaced by ``vbox``.

With ``--crowddet`` the table, the machine line and the command are written between the markers of section
``--section`` (default ``crowdhuman-speed``) of ``--md`` (default ``docs/benchmarks.md``; ``''`` skips it).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/crowdhuman_speed.py --images 2000 --crowddet /tmp/crowddet
    # the golden fixture of tests/forge/evaluation/test_crowdhuman.py (see tests/fixtures/crowdhuman/README.md):
    .venv/bin/python benchmarks/crowdhuman_speed.py --images 50 --people 10 --dets 30 --seed 2024 \\
        --write-case tests/fixtures/crowdhuman --crowddet /tmp/crowddet --reference-out ref.json --no-timing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from forge.docsection import machine_line, replace_section  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------
# synthetic case


def _person_boxes(rng, n, W, H):
    """``n`` crowded people: full boxes (xywh ints, may cross the border), visible and head boxes inside them."""
    n_cl = 1 + rng.poisson(1.5)
    centers = rng.uniform([0.05 * W, 0.2 * H], [0.95 * W, 0.9 * H], size=(n_cl, 2))
    c = centers[rng.integers(n_cl, size=n)]
    h = H * rng.uniform(0.08, 0.75, size=n)
    w = h * rng.uniform(0.3, 0.5, size=n)
    cx = c[:, 0] + rng.normal(0, 0.12 * W, size=n)
    cy = c[:, 1] + rng.normal(0, 0.08 * H, size=n)
    f = np.stack(
        [np.round(cx - w / 2), np.round(cy - h / 2), np.maximum(np.round(w), 2), np.maximum(np.round(h), 2)], 1
    )
    # visible part: a sub-box of the full box (occlusion from the side and from below)
    l_cut = rng.uniform(0, 0.35, size=n) * (rng.random(n) < 0.5)
    r_cut = rng.uniform(0, 0.35, size=n) * (rng.random(n) < 0.5)
    b_cut = rng.uniform(0, 0.5, size=n) * (rng.random(n) < 0.5)
    vx = np.round(f[:, 0] + l_cut * f[:, 2])
    vw = np.maximum(np.round(f[:, 2] * (1 - l_cut - r_cut)), 1)
    vh = np.maximum(np.round(f[:, 3] * (1 - b_cut)), 1)
    v = np.stack([vx, f[:, 1], vw, vh], 1)
    hw = np.maximum(np.round(f[:, 2] * 0.38), 1)
    hh = np.maximum(np.round(f[:, 3] * 0.13), 1)
    hb = np.stack([np.round(f[:, 0] + (f[:, 2] - hw) / 2), f[:, 1], hw, hh], 1)
    return f, v, hb


def _jitter(rng, boxes, sigma):
    n = boxes.shape[0]
    x, y, w, h = boxes.T
    x = x + rng.normal(0, sigma, n) * w
    y = y + rng.normal(0, sigma, n) * h
    w = w * np.exp(rng.normal(0, sigma, n))
    h = h * np.exp(rng.normal(0, sigma, n))
    return np.stack([x, y, w, h], 1)


def _nms(xywh, score, thr):
    """Greedy NMS (IoU > thr suppresses); returns kept indices in descending score order."""
    order = np.argsort(-score, kind="stable")
    b = xywh[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = iw * ih
    area = b[:, 2] * b[:, 3]
    over = inter / (area[:, None] + area - inter) > thr
    suppressed = np.zeros(order.size, dtype=bool)
    keep = []
    for i in range(order.size):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return order[keep]


def make_case(n_images: int = 4370, seed: int = 0, people: float = 23.0, dets: int = 100):
    """Returns ``(gt_lines, {"fbox": dt_lines, "vbox": dt_lines})`` as lists of odgt dicts."""
    rng = np.random.default_rng(seed)
    gt_lines = []
    dt_lines = {"fbox": [], "vbox": []}
    for i in range(n_images):
        W = int(rng.integers(500, 1401))
        H = int(rng.integers(400, 1001))
        n = max(1, int(rng.poisson(people)))
        f, v, hb = _person_boxes(rng, n, W, H)
        u = rng.random(n)
        tag = np.where(u < 0.04, "mask", "person")
        ext_ign = (u >= 0.04) & (u < 0.07)
        head_ign = rng.random(n) < 0.05
        # "mask" entries are crowd regions: larger boxes, all three box types equal
        big = np.round(_jitter(rng, f[tag == "mask"], 0.05) * np.array([1, 1, 2.5, 1.2]))
        big[:, 2:] = np.maximum(big[:, 2:], 2)
        for arr in (f, v, hb):
            arr[tag == "mask"] = big
        gtboxes = []
        for j in range(n):
            gtboxes.append(
                {
                    "tag": str(tag[j]),
                    "fbox": [int(t) for t in f[j]],
                    "vbox": [int(t) for t in v[j]],
                    "hbox": [int(t) for t in hb[j]],
                    "extra": {"box_id": j, "occ": int(rng.integers(0, 2)), "ignore": int(ext_ign[j])},
                    "head_attr": {"ignore": int(head_ign[j]), "occ": 0, "unsure": 0},
                }
            )
        ID = f"{100000 + i},{seed:04x}{i:08x}"
        gt_lines.append({"ID": ID, "gtboxes": gtboxes})
        person = tag == "person"
        for key, src in (("fbox", f), ("vbox", v)):
            parts, scores = [], []
            src_p = src[person]
            hit = rng.random(src_p.shape[0]) < 0.9
            parts.append(_jitter(rng, src_p[hit], 0.05))
            scores.append(rng.beta(5, 1.5, int(hit.sum())))
            dup = rng.random(src_p.shape[0]) < 0.35
            parts.append(_jitter(rng, src_p[dup], 0.12))
            scores.append(rng.beta(2, 3, int(dup.sum())))
            for region in src[~person & (tag == "mask")]:  # detections inside crowd regions
                k = int(rng.poisson(2))
                rh = region[3] * rng.uniform(0.5, 0.95, k)
                rw = rh * rng.uniform(0.3, 0.5, k)
                rx = region[0] + rng.uniform(0, 1, k) * np.maximum(region[2] - rw, 0)
                parts.append(np.stack([rx, np.full(k, region[1]), rw, rh], 1))
                scores.append(rng.beta(2, 2, k))
            n_fp = max(2 * dets - sum(p.shape[0] for p in parts), 0)  # NMS and the cap bring it to ~dets
            fh = H * rng.uniform(0.05, 0.6, n_fp)
            fw = fh * rng.uniform(0.3, 0.6, n_fp)
            parts.append(np.stack([rng.uniform(-0.1 * W, W, n_fp), rng.uniform(-0.1 * H, H, n_fp), fw, fh], 1))
            scores.append(rng.beta(1, 6, n_fp))
            boxes = np.concatenate(parts)
            score = np.concatenate(scores)
            keep = _nms(boxes, score, 0.5)  # as a detector's post-processing (CrowdDet's baseline: NMS 0.5)
            boxes, score = boxes[keep], score[keep]
            top = np.argsort(-score, kind="stable")[:dets]  # a detector's max-detections cap
            boxes, score = boxes[top], score[top]
            perm = rng.permutation(score.shape[0])  # unsorted, as files may be
            boxes, score = boxes[perm], score[perm]
            boxes[:, 2:] = np.maximum(boxes[:, 2:], 1)
            boxes = np.round(boxes, 1)
            coarse = rng.random(score.shape[0]) < 0.2  # some scores at 2 decimals: ties, exact 0.1 * i values
            score = np.where(coarse, np.round(score, 2), np.round(score, 5))
            dt_lines[key].append(
                {
                    "ID": ID,
                    "height": H,
                    "width": W,
                    "dtboxes": [
                        {"box": [float(t) for t in b], "score": float(s), "tag": 1} for b, s in zip(boxes, score)
                    ],
                }
            )
    return gt_lines, dt_lines


def make_tie_case(n_images: int = 40, seed: int = 0):
    """Small case built around exact ties (used by the golden fixture, not timed).

    Per image a few groups of mirror-symmetric boxes with integer coordinates: a detection exactly between two GT
    (equal IoU with both), or a GT exactly between two detections, with an ignore region (``tag: mask``) covering
    only one side, so that the JI depends on how the maximum-weight matching breaks the tie; plus plain noisy
    detections and scores repeated across images (ties in the AP/MR ordering).
    """
    rng = np.random.default_rng(seed)
    gt_lines, dt_lines = [], []
    for i in range(n_images):
        W, H = 960, 540
        gtboxes, dtboxes = [], []
        for k in range(int(rng.integers(2, 6))):
            x0 = 20 + 180 * k
            y = int(rng.integers(0, 200))
            w = int(rng.integers(15, 30)) * 2
            h = int(rng.integers(60, 250))
            s = int(rng.integers(max(2, w // 10), w // 3))
            kind = rng.integers(3)
            x = x0 + s + 30
            if kind == 0:  # a detection between two GT
                gtboxes += [{"tag": "person", "fbox": [x - s, y, w, h]}, {"tag": "person", "fbox": [x + s, y, w, h]}]
                dtboxes.append({"box": [x, y, w, h], "score": float(rng.choice([0.95, 0.55, 0.35, 0.15]))})
                side = x - s - 20 if rng.random() < 0.5 else x + s + int(0.4 * w)
                if rng.random() < 0.8:
                    gtboxes.append({"tag": "mask", "fbox": [side, y - 5, int(0.6 * w) + 20, h + 10]})
            elif kind == 1:  # a GT between two detections
                gtboxes.append({"tag": "person", "fbox": [x, y, w, h]})
                for dx in (-s, s):
                    dtboxes.append({"box": [x + dx, y, w, h], "score": float(rng.choice([0.9, 0.65, 0.45, 0.25]))})
                side = x - s - 20 if rng.random() < 0.5 else x + s + int(0.4 * w)
                if rng.random() < 0.8:
                    gtboxes.append({"tag": "mask", "fbox": [side, y - 5, int(0.6 * w) + 20, h + 10]})
            else:  # a plain person, a noisy detection and maybe a duplicate
                gtboxes.append({"tag": "person", "fbox": [x, y, w, h]})
                for _ in range(1 + int(rng.random() < 0.4)):
                    b = np.round(_jitter(rng, np.array([[x, y, w, h]], dtype=float), 0.08)[0], 1)
                    dtboxes.append({"box": [float(t) for t in b], "score": float(np.round(rng.random(), 2))})
        for gb in gtboxes:
            gb["vbox"] = gb["hbox"] = gb["fbox"]
            gb["extra"] = {"ignore": 0}
        ID = f"tie{seed:02d},{i:04d}"
        gt_lines.append({"ID": ID, "gtboxes": gtboxes})
        for d in dtboxes:
            d["tag"] = 1
        dt_lines.append({"ID": ID, "height": H, "width": W, "dtboxes": dtboxes})
    return gt_lines, {"fbox": dt_lines}


def write_lines(path: Path, lines) -> None:
    with open(path, "w") as f:
        for obj in lines:
            f.write(json.dumps(obj, separators=(",", ":")) + "\n")


def read_lines(path: Path):
    with open(path) as f:
        return [json.loads(t) for t in f if t.strip()]


def write_case(folder: Path, gt_lines, dt_lines) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"gt": folder / "gt.odgt"}
    write_lines(paths["gt"], gt_lines)
    for key, lines in dt_lines.items():
        paths[key] = folder / f"dt_{key}.odgt"
        write_lines(paths[key], lines)
    return paths


# ----------------------------------------------------------------------------------------------------------------
# CrowdDet (run from a local checkout, unmodified)


def _import_crowddet(crowddet: Path):
    lib = str(Path(crowddet) / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    from evaluate import compute_APMR, compute_JI  # type: ignore  # noqa: PLC0415
    from evaluate.APMRToolkits import Database  # type: ignore  # noqa: PLC0415
    from utils import misc_utils  # type: ignore  # noqa: PLC0415

    return compute_APMR, compute_JI, Database, misc_utils


def crowddet_inputs(crowddet: Path, gt_path: Path, dt_path: Path, box_type: str, tmp: Path) -> tuple[Path, Path]:
    """CrowdDet's inputs: detections with the GT embedded (its JI needs it) and, for vbox, GT with fbox := vbox."""
    _, _, _, misc_utils = _import_crowddet(crowddet)
    gts = {r["ID"]: r for r in read_lines(gt_path)}
    out_dt = []
    for r in read_lines(dt_path):
        g = misc_utils.load_gt(gts[r["ID"]], "gtboxes", box_type, ["background", "person"])
        r = dict(r, gtboxes=[{"box": [float(t) for t in b[:4]], "tag": int(b[4])} for b in g])
        out_dt.append(r)
    dt_c = tmp / f"crowddet_dt_{box_type}.odgt"
    write_lines(dt_c, out_dt)
    gt_c = gt_path
    if box_type != "fbox":
        gt_c = tmp / f"crowddet_gt_{box_type}.odgt"
        lines = []
        for r in gts.values():
            lines.append(dict(r, gtboxes=[dict(b, fbox=b[box_type]) for b in r["gtboxes"]]))
        write_lines(gt_c, lines)
    return gt_c, dt_c


class _Sink(list):
    put_nowait = list.append


def crowddet_reference(crowddet: Path, gt_c: Path, dt_c: Path) -> dict:
    """Full-precision numbers from CrowdDet's own functions (single process)."""
    compute_APMR, compute_JI, Database, misc_utils = _import_crowddet(crowddet)
    db = Database(str(gt_c), str(dt_c), "box", None, 0)
    db.compare()
    ap, (rpX, *_rest) = db.eval_AP()
    mr, _ = db.eval_MR()
    records = misc_utils.load_json_lines(str(dt_c))
    out = {"AP": float(ap), "MR-2": float(mr), "recall": float(rpX[-1])}
    ji = []
    for i in range(10):
        thr = 1e-1 * i
        sink = _Sink()
        compute_JI.compute_JI_with_ignore(sink, records, thr, "box")
        _, ratio = compute_JI.gather(sink)
        out[f"JI@{thr:.1f}"] = float(ratio)
        ji.append(float(ratio))
    out["JI"] = max(ji)
    return out


APMR_SCRIPT = """
import json, sys
sys.path.insert(0, "lib")
from evaluate import compute_APMR
ap, mr = compute_APMR.compute_APMR(sys.argv[1], sys.argv[2], "box", 0)
json.dump({"AP": float(ap), "MR-2": float(mr)}, open(sys.argv[3], "w"))
"""

JI_SCRIPT = """
import contextlib, io, json, sys
sys.path.insert(0, "lib")
from evaluate import compute_JI
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    _, ji = compute_JI.evaluation_all(sys.argv[1], "box")
json.dump({"JI": float(ji)}, open(sys.argv[2], "w"))
"""

# bytecode cached outside the tree (as for installed packages), even where PYTHONDONTWRITEBYTECODE is set
PYCACHE = os.path.join(tempfile.gettempdir(), "paperforge-bench-pycache")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("CI", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _timed(cmd: list[str], cwd: Path) -> float:
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... failed:\n{proc.stderr}")
    return elapsed


def time_ours(gt: Path, dt: Path, box_type: str, out: Path, matching: str) -> tuple[float, dict]:
    """``forge-eval crowdhuman`` as a fresh process; returns (seconds, its --json figures)."""
    cmd = [sys.executable, "-m", "forge.cli.eval", "crowdhuman", "--gt", str(gt), "--dt", str(dt)]
    cmd += ["--box-type", box_type, "--matching", matching, "--json", str(out)]
    elapsed = _timed(cmd, ROOT)
    return elapsed, json.loads(out.read_text())


def time_crowddet(crowddet: Path, gt_c: Path, dt_c: Path, tmp: Path) -> tuple[float, float, dict]:
    """CrowdDet's AP/MR and JI, each in its own fresh process from the checkout; returns (s, s, figures)."""
    out_a, out_j = tmp / "crowddet_apmr.json", tmp / "crowddet_ji.json"
    t_apmr = _timed([sys.executable, "-c", APMR_SCRIPT, str(dt_c), str(gt_c), str(out_a)], crowddet)
    t_ji = _timed([sys.executable, "-c", JI_SCRIPT, str(dt_c), str(out_j)], crowddet)
    return t_apmr, t_ji, {**json.loads(out_a.read_text()), **json.loads(out_j.read_text())}


# ----------------------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--people", type=float, default=23.0, help="mean GT boxes per image")
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", choices=["crowd", "ties"], default="crowd", help="'ties': make_tie_case (fbox only)")
    ap.add_argument("--crowddet-commit", default="", help="recorded in --reference-out and the doc section")
    ap.add_argument("--box-types", nargs="+", default=["fbox", "vbox"])
    ap.add_argument("--crowddet", "--official", type=Path, default=None, help="checkout of Purkialo/CrowdDet")
    ap.add_argument("--write-case", type=Path, default=None, help="keep the generated odgt files in this folder")
    ap.add_argument("--reference-out", type=Path, default=None, help="write CrowdDet's full-precision numbers here")
    ap.add_argument("--no-timing", action="store_true", help="only write the case / reference numbers")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours (best is reported)")
    ap.add_argument("--matching", default="blossom", choices=["blossom", "hungarian"], help="our JI matching option")
    ap.add_argument("--md", default=str(ROOT / "docs" / "benchmarks.md"), help="doc to update ('' to skip)")
    ap.add_argument("--section", default="crowdhuman-speed", help="marker name of the doc section")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.case == "ties":
        gt_lines, dt_lines = make_tie_case(args.images, args.seed)
    else:
        gt_lines, dt_lines = make_case(args.images, args.seed, args.people, args.dets)
    dt_lines = {k: v for k, v in dt_lines.items() if k in args.box_types}
    gen_s = time.perf_counter() - t0
    n_gt = sum(len(r["gtboxes"]) for r in gt_lines)
    n_dt = sum(len(r["dtboxes"]) for r in next(iter(dt_lines.values())))
    case_line = (
        f"{args.images} images, {n_gt:,} GT boxes, {n_dt:,} detections per box type "
        f"(`make_case` seed {args.seed}, {args.people:g} people and {args.dets} detections per image)"
    )
    print(f"case: {case_line} (generated in {gen_s:.1f} s)")
    refs, rows = {}, []
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        paths = write_case(args.write_case or tmp, gt_lines, dt_lines)
        if not args.no_timing:
            _timed([sys.executable, "-c", "import forge.cli.eval, forge.evaluation.crowdhuman.api"], ROOT)  # warm-up
        for key in [k for k in args.box_types if k in dt_lines]:
            if args.crowddet is not None:
                gt_c, dt_c = crowddet_inputs(args.crowddet, paths["gt"], paths[key], key, tmp)
                if args.reference_out is not None:
                    refs[key] = crowddet_reference(args.crowddet, gt_c, dt_c)
            if args.no_timing:
                continue
            best, ours = float("inf"), {}
            for _ in range(args.repeat):
                t, ours = time_ours(paths["gt"], paths[key], key, tmp / "ours.json", args.matching)
                best = min(best, t)
            row = {"box_type": key, "ours_s": best, "ours": {k: ours[k] for k in ("AP", "MR-2", "JI", "recall")}}
            if args.crowddet is not None:
                t_apmr, t_ji, theirs = time_crowddet(args.crowddet.resolve(), gt_c.resolve(), dt_c.resolve(), tmp)
                row.update(crowddet_apmr_s=t_apmr, crowddet_ji_s=t_ji, crowddet=theirs)
            rows.append(row)
        if args.reference_out is not None:
            meta = {"crowddet_commit": args.crowddet_commit, "command": " ".join(sys.argv)}
            args.reference_out.write_text(json.dumps({"meta": meta, **refs}, indent=2) + "\n")
            print(f"wrote {args.reference_out}")
    if not rows:
        return
    lines = [
        "| box | `forge-eval crowdhuman` (s) | CrowdDet APMR (s) | CrowdDet JI (s) | CrowdDet total (s) | speed-up "
        "| AP / MR-2 / JI ours | AP / MR-2 / JI CrowdDet |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        o = r["ours"]
        ours_nums = f"{o['AP']:.4f} / {o['MR-2']:.4f} / {o['JI']:.4f}"
        if "crowddet" in r:
            c = r["crowddet"]
            tot = r["crowddet_apmr_s"] + r["crowddet_ji_s"]
            lines.append(
                f"| {r['box_type']} | {r['ours_s']:.2f} | {r['crowddet_apmr_s']:.1f} | {r['crowddet_ji_s']:.1f} | "
                f"{tot:.1f} | {tot / r['ours_s']:.0f}x | {ours_nums} | "
                f"{c['AP']:.4f} / {c['MR-2']:.4f} / {c['JI']:.4f} |"
            )
        else:
            lines.append(f"| {r['box_type']} | {r['ours_s']:.2f} | - | - | - | - | {ours_nums} | - |")
    commit = f" `{args.crowddet_commit}`" if args.crowddet_commit else ""
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/crowdhuman_speed.py " + " ".join(argv or sys.argv[1:])
    body = "\n".join(
        [
            f"Machine: {machine_line()}, `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}`.",
            "",
            f"Case: {case_line}. Whole fresh processes, reading included: ours best of {args.repeat} "
            f"(`--matching {args.matching}`); CrowdDet{commit} one run of each script (its JI: a pool of 10 "
            "processes).",
            "",
            f"Command: `{command.strip()}`",
            "",
            *lines,
        ]
    )
    print("\n" + body)
    if args.md and args.crowddet is not None:
        replace_section(args.md, args.section, body)
        print(f"\nwrote section {args.section!r} of {args.md}")


if __name__ == "__main__":
    main()
