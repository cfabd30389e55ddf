"""Image-encoder latency, parameters and multiply-adds of SAM ViT-B / ViT-H, MobileSAM and EdgeSAM at 1024, and the
mask decoder's latency per prompt, in fp32 and on the fast paths (EdgeSAM ``fuse()``, channels-last, bfloat16
autocast where the device has it natively; ``--device cuda``: fp16 / bf16 autocast).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sam_speed.py                       # CPU, every model
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sam_speed.py --official /tmp/official
    python benchmarks/sam_speed.py --device cuda

``--official DIR`` (work trees of the official code outside this repository: ``DIR/sam/segment_anything`` and
``DIR/edgesam/edge_sam``, or those packages directly in ``DIR``) also times the official EdgeSAM and SAM ViT-B
encoders **on the same weights** as ours (random, seeded; loaded strictly into both) in the same run. EdgeSAM's
package imports mmdet / loralib / yacs modules its model code does not use; empty stand-ins are put in
``sys.modules`` for them (they raise if called), and if the import still fails the table says so.

Weights are random (latency does not depend on them). Multiply-adds are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the meta device (MACs = FLOPs / 2; convolutions, matmuls,
attention). The table goes to ``--md`` (default ``docs/benchmarks.md``), section ``sam-speed`` (``sam-speed-cuda``
for CUDA), with the two goals as ratios measured in the run. Latency is the fastest of ``--repeats`` rounds in which
the encoders of a group run in turn (small encoders, ours and official, in one group; ViT-B ours and official in
another; ViT-H alone), so that the load of other users of a shared machine hits them alike; with one CPU thread the
clock is the process's CPU time (the wall time of a shared machine mostly measures the waiting), else wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesam.build import build_image_encoder, sam_from_encoder  # noqa: E402
from forge.docsection import machine_line, replace_section  # noqa: E402
from forge.precision import native_bf16  # noqa: E402

MODELS = ("edge_sam", "mobile_sam", "vit_b", "vit_h")
LABELS = {"edge_sam": "EdgeSAM", "mobile_sam": "MobileSAM", "vit_b": "SAM ViT-B", "vit_h": "SAM ViT-H"}
HEAVY = ("vit_b", "vit_h")
SECTION, TITLE = "sam-speed", "## edgesam: SAM / MobileSAM / EdgeSAM encoder and decoder speed"


def count(model_name: str) -> tuple[float, float]:
    """``(parameters in M, GMACs)`` of a 1024 image encoder, built and run on the meta device."""
    with torch.device("meta"):
        enc = build_image_encoder(model_name).eval()
        x = torch.empty(1, 3, 1024, 1024)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        enc(x)
    return sum(p.numel() for p in enc.parameters()) / 1e6, counter.get_total_flops() / 2e9


def seeded(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights with sane scales, and BatchNorm statistics that are not the identity (so ``fuse()`` works)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.ndim <= 1:
                t.copy_(0.1 * torch.randn(t.shape, generator=g) + (1.0 if name.endswith("weight") else 0.0))
            else:
                t.copy_(torch.randn(t.shape, generator=g) / max(t[0].numel(), 1) ** 0.5)
    return module.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def latency(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Fastest wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` (on a shared machine the other
    users' load only ever adds time, so the minimum is the least noisy estimate)."""
    return race({"x": fn}, device, repeats, warmup)["x"]


def clock(device: torch.device) -> Callable[[], float]:
    """Seconds: on a CPU with one compute thread, the process's CPU time -- on a machine shared with other jobs the
    wall time mostly measures how long the scheduler kept us waiting; otherwise (threads, CUDA) the wall time."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def race(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int, warmup: int) -> dict[str, float]:
    """Fastest seconds (``clock``) of each function, called in turn, one call each per round, so that a change in
    the machine's load hits all of them alike."""
    now = clock(device)
    best = {k: float("inf") for k in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        sync(device)
        for _ in range(rounds):
            for key, fn in fns.items():
                t0 = now()
                fn()
                sync(device)
                best[key] = min(best[key], now() - t0)
    return best


def variants(name: str, device: torch.device) -> list[tuple[str, bool, bool, torch.dtype | None]]:
    """``(label, fuse, channels_last, autocast dtype)`` to time for one model."""
    conv = name in ("edge_sam", "mobile_sam")
    edge = name == "edge_sam"
    pre = "fused, " if edge else ""
    out = [("fp32", False, False, None)]
    if edge:
        out.append(("fp32, fused", True, False, None))
    if conv:
        out.append((pre + "channels-last", edge, True, None))
    if device.type == "cuda":
        out.append((pre + "fp16 autocast", edge, conv, torch.float16))
    if native_bf16(device):
        out.append((pre + "bf16 autocast" + (", channels-last" if conv else ""), edge, conv, torch.bfloat16))
    return out


def ours_callables(name: str, args, device: torch.device) -> dict[tuple, Callable[[], object]]:
    """``(model, 'ours', variant) -> fn`` for the variants of one model (the ViTs on a CPU: fp32 only, unless
    ``--all-variants``: minutes per call)."""
    fns = {}
    for label, fuse, cl, dtype in variants(name, device):
        if name in HEAVY and label != "fp32" and not args.all_variants and device.type == "cpu":
            continue
        enc = seeded(build_image_encoder(name))
        if fuse:
            enc.fuse()
        enc = enc.to(device)
        x = torch.randn(1, 3, 1024, 1024, device=device)
        if cl:
            enc, x = enc.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

        def run(enc=enc, x=x, dtype=dtype):
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                return enc(x)

        fns[(name, "ours", label)] = run
    return fns


def time_decoder(args, device: torch.device) -> list[dict]:
    """Prompt encoder + mask decoder (low-res logits) per prompt, for 1 and for 64 single-point prompts."""
    sam = seeded(sam_from_encoder(torch.nn.Identity(), 1024)).to(device)
    emb = torch.randn(1, 256, 64, 64, device=device)
    fns = {}
    for n in (1, 64):
        pts = torch.rand(n, 1, 2, device=device) * 1024
        lab = torch.ones(n, 1, dtype=torch.long, device=device)
        fns[n] = lambda pts=pts, lab=lab: sam.decode(emb, (pts, lab), multimask_output=True)
    best = race(fns, device, args.repeats, 1)
    rows = [{"prompts": n, "seconds": sec, "per_prompt": sec / n} for n, sec in best.items()]
    for r in rows:
        print(f"decoder, {r['prompts']:2d} prompt(s) per call: {r['per_prompt'] * 1e3:.1f} ms per prompt", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ official
def _stub(name: str, **attrs) -> None:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod


def import_official(root: Path):
    """``({package: module}, {package: why it is missing})`` for segment_anything and edge_sam under ``root``."""
    class _Unused:
        def __init__(self, *a, **k):
            raise RuntimeError("stand-in for an official dependency that the encoder does not use")

    class _CfgNode(dict):
        __getattr__ = dict.__getitem__
        __setattr__ = dict.__setitem__

    found, why = {}, {}
    for pkg, sub in (("segment_anything", "sam"), ("edge_sam", "edgesam")):
        for base in (root / sub, root):
            if (base / pkg / "__init__.py").is_file():
                sys.path.insert(0, str(base))
                break
        else:
            why[pkg] = f"no {pkg}/ under {root} or {root / sub}"
            continue
        if pkg == "edge_sam":  # its package __init__ imports the mmdet RPN code, loralib and yacs
            for name in ("mmdet", "mmdet.models", "projects"):
                _stub(name)
            _stub("mmdet.models.dense_heads", RPNHead=_Unused, CenterNetUpdateHead=_Unused)
            _stub("mmdet.models.necks", FPN=_Unused)
            _stub("projects.EfficientDet", efficientdet=None)
            _stub("loralib", Linear=_Unused)
            _stub("yacs")
            _stub("yacs.config", CfgNode=_CfgNode)
        try:
            found[pkg] = __import__(pkg)
        except Exception as exc:  # the official code's import-time dependencies are the point of the check
            why[pkg] = f"import failed: {type(exc).__name__}: {exc}"
    return found, why


def official_encoders(root: str, models: list[str]) -> tuple[dict[str, torch.nn.Module], list[str]]:
    """The official EdgeSAM and SAM ViT-B encoders (as their builders make them) holding the same seeded weights
    as ours, and notes on what could not be built."""
    found, why = import_official(Path(root))
    notes = [f"official {k}: not timed, {v}" for k, v in why.items()]
    encs = {}
    if "edge_sam" in found and "edge_sam" in models:
        encs["edge_sam"] = found["edge_sam"].build_sam().image_encoder  # build_edge_sam: RepViT-M1, FPN fusion
    if "segment_anything" in found and "vit_b" in models:
        from functools import partial

        encs["vit_b"] = found["segment_anything"].modeling.ImageEncoderViT(
            img_size=1024, patch_size=16, embed_dim=768, depth=12, num_heads=12, global_attn_indexes=[2, 5, 8, 11],
            window_size=14, out_chans=256, mlp_ratio=4, qkv_bias=True, use_rel_pos=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    for name, enc in encs.items():
        enc.load_state_dict(seeded(build_image_encoder(name)).state_dict(), strict=True)
        enc.eval()  # the official RepViT's train() returns None, so no chaining
    return encs, notes


def official_callables(encs: dict[str, torch.nn.Module], device: torch.device) -> dict[tuple, Callable]:
    fns = {}
    for name, enc in encs.items():
        enc = enc.to(device)
        x = torch.randn(1, 3, 1024, 1024, device=device)
        fns[(name, "official", "fp32")] = lambda enc=enc, x=x: enc(x)
    return fns


def same_outputs(enc: torch.nn.Module, name: str, device: torch.device) -> str:
    """Max abs. difference between our encoder and the official one on one input (same weights)."""
    ours = seeded(build_image_encoder(name)).to(device)
    x = torch.randn(1, 3, 1024, 1024, device=device)
    with torch.no_grad():
        diff = (ours(x) - enc.to(device)(x)).abs().max().item()
    return f"same weights, same input: our {LABELS[name]} encoder vs the official one, max abs. difference {diff:.1e}"


# ------------------------------------------------------------------------------------------------ report
def report(rows: list[dict], counts: dict, dec: list[dict], notes: list[str], device: torch.device) -> str:
    def find(model, impl="ours", variant="fp32"):
        return next((r["seconds"] for r in rows if (r["model"], r["impl"], r["variant"]) == (model, impl,
                                                                                              variant)), None)

    vit_b = find("vit_b")
    lines = ["| encoder | code | path | params (M) | GMACs | latency | runs | vs SAM ViT-B fp32 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, macs = counts[r["model"]]
        lat = f"{r['seconds'] * 1e3:,.0f} ms" if r["seconds"] < 10 else f"{r['seconds']:,.1f} s"
        ratio = f"{vit_b / r['seconds']:.1f}x" if vit_b else "-"
        lines.append(f"| {LABELS[r['model']]} | {r['impl']} | {r['variant']} | {p:.2f} | {macs:,.1f} | {lat} | "
                     f"{r['repeats']} | {ratio} |")
    lines.append("")
    lines.append("Decoder (prompt encoder + mask decoder, three low-res masks, fp32): "
                 + ", ".join(f"{d['per_prompt'] * 1e3:.1f} ms per prompt with {d['prompts']} per call" for d in dec)
                 + ".")
    goals = []
    edge = find("edge_sam", variant="fp32, fused")
    official = find("edge_sam", "official")
    if edge and official:
        goals.append(f"our EdgeSAM encoder (fused, fp32) / official (fp32, same weights) = "
                     f"**{edge / official:.2f}** (goal <= 1; unfused {find('edge_sam') / official:.2f})")
    if edge and vit_b:
        best = min(r["seconds"] for r in rows if r["model"] == "edge_sam" and r["impl"] == "ours")
        goals.append(f"SAM ViT-B fp32 / our EdgeSAM fused fp32 = **{vit_b / edge:.1f}x** (goal >= 20x), / our "
                     f"fastest EdgeSAM path = {vit_b / best:.1f}x")
    if find("vit_b", "official") and vit_b:
        goals.append(f"our SAM ViT-B / official = {vit_b / find('vit_b', 'official'):.2f}")
    threads = torch.get_num_threads() if device.type == "cpu" else None
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    head = (f"`{' '.join(['python', 'benchmarks/sam_speed.py'] + sys.argv[1:])}`; {dev}, {machine_line()}"
            + (f", {threads} thread(s), `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}`" if threads else "")
            + "; batch 1, 1024 x 1024 input, random weights; latency = the fastest of the runs, in "
            + ("process CPU time (one compute thread; the machine was shared)" if clock(device) is time.process_time
               else "wall time") + ".")
    return "\n".join([head, "", *lines, "", *(f"- {g}" for g in goals), *(f"- {n}" for n in notes)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of the small encoders and the decoder")
    p.add_argument("--heavy-repeats", type=int, default=2, help="timed runs of SAM ViT-B (ViT-H: 1)")
    p.add_argument("--all-variants", action="store_true", help="CPU: also the bf16 path of the ViTs")
    p.add_argument("--official", help="folder with the official segment_anything / edge_sam work trees")
    p.add_argument("--md", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    counts = {m: count(m) for m in args.models}
    for m, (prm, macs) in counts.items():
        print(f"{LABELS[m]:10s} {prm:8.2f} M parameters {macs:10.1f} GMACs", flush=True)
    dec = time_decoder(args, device)
    encs, notes = official_encoders(args.official, args.models) if args.official else ({}, [])
    if "edge_sam" in encs:
        notes.append(same_outputs(encs["edge_sam"], "edge_sam", device))
    rows: list[dict] = []
    # small encoders in one race (ours and official interleaved); ViT-B ours / official in another; ViT-H alone
    groups = [([m for m in args.models if m not in HEAVY], args.repeats, 1), (["vit_b"], args.heavy_repeats, 0),
              (["vit_h"], 1, 0)]
    for names, rounds, warmup in groups:
        fns = {}
        for m in (n for n in names if n in args.models):
            fns.update(ours_callables(m, args, device))
        fns.update(official_callables({m: e for m, e in encs.items() if m in names}, device))
        if not fns:
            continue
        for (m, impl, variant), sec in race(fns, device, rounds, warmup).items():
            rows.append({"model": m, "impl": impl, "variant": variant, "seconds": sec, "repeats": rounds})
            print(f"{LABELS[m]:10s} {impl:8s} {variant:36s} {sec * 1e3:10.1f} ms  ({rounds} runs)", flush=True)
        del fns
    body = report(rows, counts, dec, notes, device)
    print("\n" + body)
    if not args.no_write:
        section = SECTION + ("-cuda" if device.type == "cuda" else "")
        replace_section(args.md, section, body, title=TITLE + (" (CUDA)" if device.type == "cuda" else ""))
        print(f"-> {args.md} ({section})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
