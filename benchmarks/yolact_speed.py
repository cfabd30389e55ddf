"""YOLACT speed: network forward latency / FPS (R50-550, R101-550, optionally YOLACT++) and Fast NMS vs standard NMS.

    python benchmarks/yolact_speed.py                      # CPU: fp32, channels-last, bf16 autocast (if native)
    python benchmarks/yolact_speed.py --device cuda        # CUDA: eager, channels-last, AMP, torch.compile variants

Forward = backbone + FPN + protonet + head (``mode='tensor'``), batch 1, random weights (speed does not depend on
them). NMS is timed at the paper's setting (80 classes, top 200 per class, IoU 0.5, 100 detections) on synthetic
clustered candidates: Fast NMS (``forge.ops.nms.fast_nms``), class-agnostic Fast NMS and standard per-class NMS
(``torchvision.ops.batched_nms``). Prints a markdown table; record results with the machine in docs/yolact.md.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from forge.ops.nms import cc_fast_nms, fast_nms, standard_nms
from forge.precision import native_bf16
from yolact.convert import build_official


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
    return f"{med:8.1f} | {statistics.mean(times):8.1f} | {1000 / med:6.1f}"


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
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    iters = args.iters or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev_name = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()} CPU"
    print(f"# YOLACT speed on {dev_name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    fp16, bf16 = torch.float16, torch.bfloat16
    variants = [("eager fp32", False, None, False)]
    if cuda and not args.no_variants:
        variants += [("channels-last", True, None, False), ("AMP fp16", False, fp16, False),
                     ("channels-last + AMP", True, fp16, False), ("compile + channels-last + AMP", True, fp16, True)]
    elif not args.no_variants:
        variants += [("channels-last", True, None, False)]
        # bf16 autocast is what training uses here (runtime.precision: auto); without hardware bf16 it is emulated, slow
        if native_bf16("cpu"):
            variants += [("bf16 autocast", False, bf16, False), ("channels-last + bf16 autocast", True, bf16, False)]
        else:
            print("(no AVX512-BF16/AMX on this CPU: bf16 autocast variants left out)\n")
    print("| model | input | variant | median ms | mean ms | FPS |\n|---|---|---|---|---|---|")
    for name in args.models:
        for label, cl, amp, comp in variants:
            try:
                t = bench_forward(name, args.size, args.device, iters, warmup, cl, amp, comp)
                print(f"| {name} | {args.size} | {label} | {fmt(t)} |", flush=True)
            except Exception as err:  # a variant unsupported on this machine must not hide the others
                print(f"| {name} | {args.size} | {label} | failed: {type(err).__name__}: {err} | | |", flush=True)
    nms_times, n = bench_nms(args.device, max(iters, 20), warmup, args.candidates)
    print(f"\nNMS: 80 classes, top-200 per class, IoU 0.5, max 100 detections, {n} candidates above 0.05\n")
    print("| method | median ms | mean ms | calls/s |\n|---|---|---|---|")
    for k, t in nms_times.items():
        print(f"| {k} | {fmt(t)} |")


if __name__ == "__main__":
    main()
