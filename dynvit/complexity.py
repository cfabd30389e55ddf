"""Parameters, multiply-adds, attention-map size and measured CPU latency of every dynvit variant.

    python -m dynvit.complexity                          # DeiT-T and DeiT-S at 224 px, batch 1, 1 thread
    python -m dynvit.complexity --sizes tiny --threads 2 --repeats 20 --markdown table.md
    python -m dynvit.complexity --repeats 10 --doc docs/dynvit.md    # rewrites the table of the docs

Multiply-adds are counted analytically per layer (patch embedding, q/k/v generation, ``Q K^T``, ``A V``, output
projection, MLP, head; normalisations, softmax and GELU are not counted, as is usual). :func:`count_macs` agrees
with ``torch.utils.flop_counter`` wherever every product is a matrix product (tested). Attention-map elements
(``maps x N x N`` summed over blocks, per image) are what the normalisation touches and what training stores for
the backward pass: the cost the multiply-add count does not show. Latency is the median wall time of a forward
pass (``torch.inference_mode``) after warm-up runs.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from forge.docsection import machine_line, replace_section

from .attention import Attention
from .depthwise import DepthwiseAttention
from .vit import DEIT_SIZES, VisionTransformer

# name -> the attention constructor of every block ("heads": as many groups as the size has heads). The
# per-channel variants compute their maps 8 channels at a time (same outputs; faster on a CPU cache than all at once).
VARIANTS: dict[str, Callable[..., nn.Module]] = {
    "softmax": partial(Attention, norm="softmax"),
    "relu_ln": partial(Attention, norm="relu_ln"),
    "dw": partial(DepthwiseAttention, groups=None, qkv="depthwise", norm="softmax", chunk_groups=8),
    "dw_linear_qkv": partial(DepthwiseAttention, groups=None, qkv="linear", norm="softmax", chunk_groups=8),
    "dw_heads": partial(DepthwiseAttention, groups="heads", qkv="depthwise", norm="softmax"),
}


def build(size: str, variant: str, img_size: int = 224, num_classes: int = 1000) -> VisionTransformer:
    if size not in DEIT_SIZES:
        raise ValueError(f"size must be one of {sorted(DEIT_SIZES)}, got {size!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return VisionTransformer(
        img_size=img_size, num_classes=num_classes, attn_layer=VARIANTS[variant], **DEIT_SIZES[size]
    )


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _attn_modules(model: VisionTransformer) -> list[Attention]:
    return [block.attn for block in model.blocks]


def attention_map_elements(model: VisionTransformer) -> int:
    """Attention-map entries per image, summed over blocks: ``maps * N * N``."""
    n = model.num_patches + 1
    return sum(attn.num_heads * n * n for attn in _attn_modules(model))


def count_macs(model: VisionTransformer) -> int:
    """Multiply-adds of one forward pass for one image (see the module docstring for what is counted)."""
    n = model.num_patches + 1
    pe = model.patch_embed
    macs = model.num_patches * pe.out_channels * pe.in_channels * pe.kernel_size[0] * pe.kernel_size[1]
    for block in model.blocks:
        attn = block.attn
        c = attn.num_heads * attn.head_dim
        if isinstance(attn, DepthwiseAttention) and attn.qkv is None:
            macs += n * 3 * c  # per-channel scale
        else:
            macs += n * c * 3 * c
        macs += 2 * n * n * c  # Q K^T and A V over all maps: maps * N * N * (C / maps), twice
        if isinstance(attn.proj, nn.Linear):
            macs += n * c * c
        macs += 2 * n * c * block.mlp.fc1.out_features
    macs += model.head.in_features * model.head.out_features
    return macs


@torch.inference_mode()
def latency_ms(
    model: nn.Module, img_size: int, batch: int = 1, repeats: int = 10, warmup: int = 2
) -> tuple[float, float]:
    """Median and minimum forward time in milliseconds on the CPU (the minimum is the least disturbed by other
    processes on a shared machine)."""
    model.eval()
    x = torch.randn(batch, 3, img_size, img_size)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def table(
    sizes: list[str], variants: list[str], img_size: int, batch: int, repeats: int, measure: bool = True
) -> list[dict]:
    rows = []
    for size in sizes:
        for variant in variants:
            torch.manual_seed(0)
            model = build(size, variant, img_size)
            rows.append(
                dict(
                    model=f"DeiT-{size[0].upper()}",
                    variant=variant,
                    params_m=count_params(model) / 1e6,
                    gmacs=count_macs(model) / 1e9,
                    attn_elems_m=attention_map_elements(model) / 1e6,
                    latency_ms=latency_ms(model, img_size, batch, repeats) if measure else (math.nan, math.nan),
                )
            )
    return rows


def to_markdown(rows: list[dict], batch: int, threads: int) -> str:
    lines = [
        f"| model | variant | params (M) | MACs (G) | attention-map elements / image (M) | "
        f"CPU latency, batch {batch}, {threads} thread(s): median (min) ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        median, best = r["latency_ms"]
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['params_m']:.2f} | {r['gmacs']:.3f} | {r['attn_elems_m']:.2f} | "
            f"{median:.1f} ({best:.1f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dynvit.complexity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(DEIT_SIZES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-latency", action="store_true", help="count only (no timing)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--doc", help="also write it into the dynvit-complexity section of this Markdown file "
                                      "(docs/dynvit.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = table(args.sizes, args.variants, args.img_size, args.batch, args.repeats, measure=not args.no_latency)
    text = to_markdown(rows, args.batch, args.threads)
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.img_size} px"
    print(text)
    print(f"\n({machine})")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + f"\n\n({machine})\n")
    if args.doc:
        given = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
        replace_section(args.doc, "dynvit-complexity", f"{text}\n\n{machine_line()}, {args.threads} thread(s), "
                        f"{args.img_size} px. Command: `python -m dynvit.complexity {given}`")


if __name__ == "__main__":
    main()
