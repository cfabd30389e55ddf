"""YOLACT speed: network forward latency / FPS (R50-550, R101-550, optionally YOLACT++) and Fast NMS vs standard NMS.

    python benchmarks/yolact_speed.py                      # CPU: fp32, channels-last, bf16 autocast (if native)
    python benchmarks/yolact_speed.py --device cuda        # CUDA: eager, channels-last, AMP, torch.compile variants

Forward = backbone + FPN + protonet + head (``mode='tensor'``), batch 1, random weights (speed does not depend on
them). NMS is timed at the paper's setting (80 classes, top 200 per class, IoU 0.5, 100 detections) on synthetic
clustered candidates: Fast NMS (``forge.ops.nms.fast_nms``), class-agnostic Fast NMS and standard per-class NMS
(``torchvision.ops.batched_nms``). Prints the tables and writes them, with the machine, date and command, into
their section of docs/benchmarks.md (``<!-- yolact-speed:begin/end -->``; ``--no-write``: print only). A CUDA run
writes its own section (``yolact-speed-cuda``), so CPU and GPU figures sit side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time

import torch

from forge.docsection import machine_line, replace_section
from forge.ops.nms import cc_fast_nms, fast_nms, standard_nms
from forge.precision import native_bf16
from yolact.convert import build_official

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn, device: str, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return times


def bench_forward(name: str, size: int, device: str, iters: int, warmup: int, channels_last: bool,
                  amp: torch.dtype | None, compile_: bool) -> list[float]:
    net = build_official(name).eval().to(device)
    x = torch.randn(1, 3, size, size, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fwd = net.forward_tensor
    if compile_:
        fwd = torch.compile(fwd)
    ctx = torch.autocast(device_type=device.split(":")[0], dtype=amp) if amp else contextlib.nullcontext()

    def run():
        with torch.inference_mode(), ctx:
            fwd(x)

    return timeit(run, device, iters, warmup + (2 if compile_ else 0))


def nms_candidates(n: int, num_classes: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` boxes around 30 objects with peaked class scores (a softmax over 81 classes)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand((30, 2), generator=g) * 500 + 25
    sizes = torch.rand((30, 2), generator=g) * 150 + 20
    obj = torch.randint(0, 30, (n,), generator=g)
    c = centers[obj] + torch.randn((n, 2), generator=g) * 8
    wh = sizes[obj] * (1 + 0.15 * torch.randn((n, 2), generator=g)).clamp(min=0.3)
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1) / 550
    logits = torch.randn((n, num_classes + 1), generator=g)
    logits[torch.arange(n), 1 + obj % num_classes] += 4
    scores = logits.softmax(-1)[:, 1:]
    return boxes.to(device), scores.to(device)


def bench_nms(device: str, iters: int, warmup: int, candidates: int) -> dict[str, list[float]]:
    boxes, scores = nms_candidates(candidates, 80, device)
    keep = scores.max(1).values > 0.05  # the conf threshold applied before NMS, as in the model
    boxes, scores = boxes[keep], scores[keep]
    fns = {
        "Fast NMS (per class)": lambda: fast_nms(boxes, scores, iou_threshold=0.5, top_k=200, max_det=100),
        "Fast NMS (class-agnostic)": lambda: cc_fast_nms(boxes, scores, iou_threshold=0.5, top_k=200, max_det=100),
        "standard NMS (batched_nms)": lambda: standard_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05,
                                                           top_k=None, max_det=100),
    }
    return {k: timeit(fn, device, iters, warmup) for k, fn in fns.items()}, int(keep.sum())


def fmt(times: list[float]) -> str:
    med = statistics.median(times)
    return f"{med:.1f} | {statistics.mean(times):.1f} | {1000 / med:.1f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=["yolact_resnet50", "yolact_base"])
    p.add_argument("--size", type=int, default=550)
    p.add_argument("--iters", type=int, default=None, help="timed runs (default: 5 on CPU, 50 on CUDA)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--candidates", type=int, default=5000, help="NMS candidates before the 0.05 threshold")
    p.add_argument("--no-variants", action="store_true", help="only eager fp32")
    p.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="where the section is written")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    iters = args.iters or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev_name = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()} CPU"
    fp16, bf16 = torch.float16, torch.bfloat16
    variants = [("eager fp32", False, None, False)]
    notes = []
    if cuda and not args.no_variants:
        variants += [("channels-last", True, None, False), ("AMP fp16", False, fp16, False),
                     ("channels-last + AMP", True, fp16, False), ("compile + channels-last + AMP", True, fp16, True)]
    elif not args.no_variants:
        variants += [("channels-last", True, None, False)]
        # bf16 autocast is what training uses here (runtime.precision: auto); without hardware bf16 it is emulated, slow
        if native_bf16("cpu"):
            variants += [("bf16 autocast", False, bf16, False), ("channels-last + bf16 autocast", True, bf16, False)]
        else:
            notes.append("No AVX512-BF16/AMX on this CPU: bf16 autocast variants left out.")
    lines = ["| model | input | variant | median ms | mean ms | FPS |", "|---|---|---|---:|---:|---:|"]
    print(f"# YOLACT speed on {dev_name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    print("\n".join(lines), flush=True)
    for name in args.models:
        for label, cl, amp, comp in variants:
            try:
                t = bench_forward(name, args.size, args.device, iters, warmup, cl, amp, comp)
                row = f"| {name} | {args.size} | {label} | {fmt(t)} |"
            except Exception as err:  # a variant unsupported on this machine must not hide the others
                row = f"| {name} | {args.size} | {label} | failed: {type(err).__name__}: {err} | | |"
            lines.append(row)
            print(row, flush=True)
    nms_times, n = bench_nms(args.device, max(iters, 20), warmup, args.candidates)
    nms = [f"NMS: 80 classes, top-200 per class, IoU 0.5, max 100 detections, {n} synthetic candidates above 0.05:",
           "", "| method | median ms | mean ms | calls/s |", "|---|---:|---:|---:|"]
    nms += [f"| {k} | {fmt(t)} |" for k, t in nms_times.items()]
    print("\n" + "\n".join(nms))
    if args.no_write:
        return
    given = argv if argv is not None else sys.argv[1:]
    body = "\n".join([
        f"Machine: {dev_name}, {machine_line()}, {torch.get_num_threads()} threads; batch 1, random weights, "
        f"{iters} timed runs after {warmup} warm-up.",
        "",
        f"Command: `{' '.join(['python benchmarks/yolact_speed.py', *given])}`",
        "",
        *lines,
        *([""] + notes if notes else []),
        "",
        *nms,
    ])
    section = "yolact-speed-cuda" if cuda else "yolact-speed"
    replace_section(args.md, section, body, title="## YOLACT: forward and NMS speed, CUDA" if cuda else None)
    print(f"\nwrote section {section} of {args.md}")


if __name__ == "__main__":
    main()
