"""NMS latency on crowded pedestrian-like candidates: greedy, Soft, Fast and NOH-NMS for 100 / 1,000 / 5,000 boxes.

    python benchmarks/nms_speed.py                                   # CPU, 1 thread
    python benchmarks/nms_speed.py --official /work/official/nohnms_repo   # also the public NOH-NMS function
    python benchmarks/nms_speed.py --device cuda

One class, IoU 0.5, every candidate considered (``top_k=None``, ``max_det=None``): greedy NMS
(``forge.ops.nms.standard_nms`` = ``torchvision.ops.batched_nms``), Gaussian Soft-NMS (``soft_nms``, sigma 0.5,
scores below 0.01 dropped), Fast NMS (``fast_nms``), NOH-NMS (``forge.ops.noh_nms.noh_nms`` with the public
code's defaults) and its step-by-step path (the one exact ties take). ``--official DIR`` imports
``DIR/detectron2/layers/nms.py`` of TencentYoutuResearch/PedestrianDetection-NohNMS (a checkout, or the single
file as ``DIR/nms.py``) and times its ``batched_noh_nms(..., method=3)`` on the same candidates in the same run,
checking that it keeps the same boxes.

Candidates: people of 30-120 px width (height 2.2-3x), in groups of 1-5 each shifted 0.05-0.45 widths from the
previous, 6 detections per person jittered by 5% of its size, each with a hallucinated neighbour (a jittered copy
of the most-overlapping other person of its group) and that IoU as its probability; scores U(0.05, 1). The image
is 1200 x 800 up to 1,000 boxes and widens beyond, so the crowd density stays that of 1,000 boxes.
Writes the table into docs/benchmarks.md (section ``nms-speed``, ``nms-speed-cuda`` for CUDA; ``--no-write``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch

from forge.docsection import machine_line, replace_section
from forge.ops.boxes import box_iou
from forge.ops.nms import fast_nms, soft_nms, standard_nms
from forge.ops.noh_nms import _noh_sequential, noh_nms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (100, 1000, 5000)


def crowd(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` crowded candidates (module docstring): boxes, scores, overlap_boxes, overlap_probs (float32)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(shape, generator=g, dtype=torch.float64)  # noqa: E731
    people = max(1, -(-n // 6))
    width = 1200.0 * max(1.0, n / 1000)
    persons, neighbour = [], []
    while len(persons) < people:
        w = 30 + 90 * float(rand(1))
        x, y = float(rand(1)) * (width - 3 * w), float(rand(1)) * (800 - 3 * w)
        group = []
        for _ in range(1 + int(rand(1) * 5)):
            group.append(torch.tensor([x, y, x + w, y + w * (2.2 + 0.8 * float(rand(1)))], dtype=torch.float64))
            x += (0.05 + 0.4 * float(rand(1))) * w
            w *= 0.9 + 0.2 * float(rand(1))
        start = len(persons)
        persons += group
        if len(group) == 1:
            neighbour.append(-1)
            continue
        gb = torch.stack(group)
        iou = box_iou(gb, gb).fill_diagonal_(-1)
        neighbour += (iou.argmax(1) + start).tolist()
    persons_t = torch.stack(persons[:people])
    nb = torch.tensor(neighbour[:people]).clamp(max=people - 1)
    pick = torch.arange(n) % people
    size = (persons_t[:, 2:] - persons_t[:, :2]).repeat(1, 2)
    boxes = persons_t[pick] + 0.05 * size[pick] * torch.randn((n, 4), generator=g, dtype=torch.float64)
    lone = nb[pick] < 0
    target = torch.where(lone[:, None], persons_t[pick] + torch.tensor([0.5, 0, 0.5, 0]) * size[pick],
                         persons_t[nb[pick].clamp(min=0)])
    tsize = (target[:, 2:] - target[:, :2]).repeat(1, 2)
    over = target + 0.05 * tsize * torch.randn((n, 4), generator=g, dtype=torch.float64)
    probs = torch.where(lone, 0.35 * rand(n), box_iou(persons_t[pick], target).diagonal() + 0.1 * rand(n) - 0.05)
    for b in (boxes, over):
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    return {"boxes": boxes.float(), "scores": (0.05 + 0.95 * rand(n)).float(), "overlap_boxes": over.float(),
            "overlap_probs": probs.clamp(0, 1).float()}


def load_official(path: str):
    """``batched_noh_nms`` of the public repository (a checkout, or a directory holding its ``nms.py``)."""
    for candidate in (os.path.join(path, "detectron2", "layers", "nms.py"), os.path.join(path, "nms.py"), path):
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("official_noh_nms", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "batched_noh_nms"):
                return module.batched_noh_nms
    raise SystemExit(f"--official {path}: no detectron2/layers/nms.py with batched_noh_nms there")


def timed(fn, iters: int, device: str, setup=None, warmup: int = 1) -> tuple[float, object]:
    """Median milliseconds of ``iters`` calls (after ``warmup`` untimed ones) and the last result."""
    times, out = [], None
    for k in range(iters + warmup):
        args = setup() if setup else ()
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        if k >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def bench(n: int, device: str, official, iters: int) -> dict[str, tuple[float, int]]:
    c = {k: v.to(device) for k, v in crowd(n).items()}
    b, s, ob, op = c["boxes"], c["scores"], c["overlap_boxes"], c["overlap_probs"]
    s2 = s[:, None]
    common = dict(iou_threshold=0.5, top_k=None, max_det=None)
    runs = {
        "greedy (`standard_nms`)": lambda: standard_nms(b, s2, **common)[0],
        "Soft-NMS, Gaussian (`soft_nms`)": lambda: soft_nms(b, s2, score_threshold=0.01, **common)[0],
        "Fast NMS (`fast_nms`)": lambda: fast_nms(b, s2, **common)[0],
        "NOH-NMS (`noh_nms`)": lambda: noh_nms(b, s, ob, op)[0],
        "NOH-NMS, step-by-step tie path": lambda: _noh_sequential(b, s, ob, op, None, 0.5, 0.01, 0.2, 0.3, 0.6,
                                                                  1.0)[0],
    }
    out = {}
    for name, fn in runs.items():
        ms, keep = timed(fn, iters, device)
        out[name] = (ms, len(keep))
    if official is not None:
        arrays = [x.cpu().numpy() for x in (b, s, op, ob)]
        setup = lambda: [a.copy() for a in arrays]  # noqa: E731 - the public function permutes them in place
        # pure Python: no warm-up needed; it returns its (permuted, in place) arrays for the check below
        ms, (keep, args) = timed(lambda *a: (official(*a, Nt=0.5, thresh=0.01, method=3), a),
                                 1 if n >= 5000 else 3, "cpu", setup, warmup=0)
        out["public `batched_noh_nms(method=3)`"] = (ms, len(keep))
        ours = noh_nms(b, s, ob, op)[0].cpu()
        kept_rows = {tuple(r) for r in args[0][: len(ours)].tolist()}
        if len(keep) != len(ours) or kept_rows != {tuple(r) for r in b.cpu()[ours].numpy().tolist()}:
            raise SystemExit(f"{n} boxes: the public function keeps other boxes than noh_nms")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--official", default=None, help="public NohNMS checkout (or a directory with its nms.py)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--iters", type=int, default=None, help="timed calls per method (default: 20/5/3 by size)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the public code is one thread)")
    p.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    torch.set_num_threads(args.threads)
    official = load_official(args.official) if args.official else None
    results = {}
    for n in args.sizes:
        iters = args.iters or (20 if n <= 100 else 5 if n <= 1000 else 3)
        results[n] = bench(n, args.device, official, iters)
        print(n, {k: f"{v[0]:.1f} ms, {v[1]} kept" for k, v in results[n].items()}, flush=True)
    names = list(next(iter(results.values())))
    head = "| method | " + " | ".join(f"{n:,} boxes: ms (kept)" for n in args.sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(args.sizes)]
    lines += ["| " + name + " | " + " | ".join(f"{results[n][name][0]:.1f} ({results[n][name][1]})"
                                               for n in args.sizes) + " |" for name in names]
    pub = "public `batched_noh_nms(method=3)`"
    if official is not None:
        ratio = " / ".join(f"{results[n][pub][0] / results[n]['NOH-NMS (`noh_nms`)'][0]:.0f}x" for n in args.sizes)
        lines += ["", f"`noh_nms` vs the public function (same boxes kept, checked): {ratio} faster at "
                      f"{' / '.join(f'{n:,}' for n in args.sizes)} boxes (goal: >= 10x at 1,000 on CPU)."]
    table = "\n".join(lines)
    print("\n" + table)
    if args.no_write:
        return
    given = argv if argv is not None else sys.argv[1:]
    dev = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    body = "\n".join([
        f"Machine: {dev}, {machine_line()}, {args.threads} torch thread(s); median of 20 / 5 / 3 timed calls by "
        "size after one warm-up (the public function: 3 / 3 / 1 calls, no warm-up).", "",
        f"Command: `{' '.join(['python benchmarks/nms_speed.py', *given])}`", "", table])
    section = "nms-speed-cuda" if args.device == "cuda" else "nms-speed"
    title = "## NMS family latency: greedy, Soft, Fast, NOH-NMS (`benchmarks/nms_speed.py`)"
    replace_section(args.md, section, body, title=title + (", CUDA" if args.device == "cuda" else ""))
    print(f"\nwrote section {section} of {args.md}")


if __name__ == "__main__":
    main()
