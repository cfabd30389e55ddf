"""Can the demo CLIP's image tower learn shapes? A supervised probe behind the ``make demo-ovsam`` result.

``make demo-ovsam`` named colours but not shapes while the small CLIP of ``make demo-denseclip`` was trained at
AdamW 2e-3: its text embeddings of "red star" and "red circle" had cosine ~0.9997. This script asks whether that is
the CLIP objective, the image tower or the optimisation: each tower below is trained **with labels**
(cross-entropy, AdamW at each of ``--lrs``, batch 64) to name the shape of single-shape scenes of
:mod:`forge.data.semseg.synthetic` (5 classes, chance 20 %), for the same number of steps, and scored on held-out
scenes:

* ``clip_rn``: the demo CLIP's ResNet tower (open_clip ``ModifiedResNet``, width 16, one block per stage,
  attention pooling), as ``benchmarks/denseclip_demo.py`` builds it (open_clip zero-initialises each block's last BN);
* ``clip_rn_bn1``: the same with those BN weights at 1;
* ``plain_cnn``: five conv-BN-ReLU-maxpool layers (16-64 channels) and global average pooling.

``--clip FILE`` also scores a trained CLIP file zero-shot (the 30 "a {colour} {shape}" captions). Results go to
the section ``clip-shape-probe`` of ``--md``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "clip-shape-probe"
TITLE = "## Shape probe: can the demo CLIP's image tower learn shapes?"


@functools.cache
def _demo_module():
    """``benchmarks/denseclip_demo.py``, loaded once: the demo CLIP, its scenes, its normalisation."""
    spec = importlib.util.spec_from_file_location("denseclip_demo", os.path.join(ROOT, "benchmarks",
                                                                                 "denseclip_demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def single_shape_scenes(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``denseclip_demo.single_shape_scenes``: normalised one-shape images, shape indices, captions."""
    return _demo_module().single_shape_scenes(n, size, seed)


def _demo_clip(size: int):
    return _demo_module().tiny_clip(size, "rn")


def towers(size: int) -> dict[str, nn.Module]:
    """The three image towers with a 5-way linear head each (seeded identically)."""
    out = {}
    for name in ("clip_rn", "clip_rn_bn1", "plain_cnn"):
        torch.manual_seed(0)
        if name.startswith("clip_rn"):
            visual = _demo_clip(size).visual
            if name == "clip_rn_bn1":
                for m in visual.modules():
                    if hasattr(m, "bn3"):
                        nn.init.ones_(m.bn3.weight)
            out[name] = nn.Sequential(visual, nn.Linear(visual.output_dim, 5))
        else:
            def block(i: int, o: int) -> nn.Sequential:
                return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

            out[name] = nn.Sequential(block(3, 16), block(16, 32), block(32, 64), block(64, 64), block(64, 64),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 5))
    return out


def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, steps: int,
          batch: int, seed: int, every: int, lr: float) -> list[tuple[int, float]]:
    """Supervised training at AdamW ``lr``; ``[(step, val accuracy), ...]`` every ``every`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    curve = []
    for step in range(1, steps + 1):
        model.train()
        idx = torch.from_numpy(rng.choice(len(x), batch, replace=False))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                curve.append((step, float((model(xv).argmax(1) == yv).float().mean())))
    return curve


def zero_shot(clip_file: str, n: int, size: int, seed: int) -> dict:
    """A CLIP file naming single-shape scenes among the 30 captions (``denseclip_demo.zero_shot_naming``)."""
    from denseclip.clip_loading import load_clip

    return _demo_module().zero_shot_naming(load_clip(None, clip_file).model, n, size, seed)


def main(argv: list[str] | None = None) -> dict:
    from forge.docsection import machine_line, replace_section

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=300)
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--every", type=int, default=60)
    p.add_argument("--lrs", default="2e-3,5e-4", help="comma-separated AdamW learning rates, one run each")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clip", default="work_dirs/denseclip_demo/clip.pt", help="a trained CLIP file ('' to skip)")
    p.add_argument("--md", default="docs/benchmarks.md")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, _ = single_shape_scenes(args.train, args.size, seed=0)
    xv, yv, _ = single_shape_scenes(args.val, args.size, seed=1)
    res: dict = {"curves": {}, "seconds": {}}
    for lr in (float(v) for v in args.lrs.split(",")):
        for name, model in towers(args.size).items():
            key = f"{name}, lr {lr:g}"
            t0 = time.time()
            res["curves"][key] = probe(model, x, y, xv, yv, args.steps, args.batch, 0, args.every, lr)
            res["seconds"][key] = time.time() - t0
            print(f"{key}: " + ", ".join(f"step {s} {100 * a:.1f} %" for s, a in res["curves"][key])
                  + f" ({res['seconds'][key]:.0f} s)", flush=True)
    if args.clip and os.path.isfile(args.clip):
        res["zero_shot"] = zero_shot(args.clip, args.val, args.size, seed=1)
        print(f"{args.clip} zero-shot: {res['zero_shot']}", flush=True)
    if args.md:
        steps = [s for s, _ in next(iter(res["curves"].values()))]
        rows = [f"| {name} | " + " | ".join(f"{100 * a:.1f}" for _, a in curve) + f" | {res['seconds'][name]:.0f} s |"
                for name, curve in res["curves"].items()]
        body = [f"Machine: {machine_line()}, {args.threads} threads. Command: "
                f"`python benchmarks/clip_shape_probe.py {' '.join(argv)}`".rstrip() + ".", "",
                f"Shape of single-shape scenes ({args.size} px, {len(x)} train / {len(xv)} val), trained with labels; "
                "val accuracy (%, chance 20) after each number of steps of batch "
                f"{args.batch}:", "",
                "| image tower | " + " | ".join(f"step {s}" for s in steps) + " | time |",
                "|---|" + "---|" * (len(steps) + 1), *rows]
        if "zero_shot" in res:
            z = res["zero_shot"]
            body += ["", f"The trained demo CLIP `{args.clip}`, zero-shot among the 30 \"a {{colour}} {{shape}}\" "
                     f"captions on the same val scenes: {100 * z['acc']:.1f} % right (chance 3.3), colour "
                     f"{100 * z['colour']:.1f} % (16.7), shape {100 * z['shape']:.1f} % (20); captions differing only "
                     f"in shape have text cosine {z['shape_cos']:.3f} on average."]
        replace_section(args.md, SECTION, "\n".join(body), title=TITLE)
        print(f"wrote section {SECTION} of {args.md}")
    return res


if __name__ == "__main__":
    main()
