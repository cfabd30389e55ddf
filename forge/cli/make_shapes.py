"""``forge-make-shapes OUT --train N --val M --size S [--seed 0]``: write the synthetic shapes set (COCO format).

See :mod:`forge.data.shapes` for what it contains. Rendering shows a progress bar per split on a terminal (none in
CI or when stderr is redirected); the summary lines go to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time

from forge.data.shapes import make_shapes


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="forge-make-shapes",
        description="Write a synthetic COCO-format instance set of occluding shapes on textured backgrounds: "
        "OUT/{train,val}/*.png and OUT/annotations/instances_{train,val}.json.",
    )
    p.add_argument("out", help="output folder (created; existing files of the same names are overwritten)")
    p.add_argument("--train", type=_positive, default=200, help="number of training images (default 200)")
    p.add_argument("--val", type=_positive, default=50, help="number of validation images (default 50)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels, >= 32 (default 256)")
    p.add_argument("--seed", type=_positive, default=0, help="random seed; same seed, same data (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size < 32:
        build_parser().error(f"--size must be >= 32, got {args.size}")
    start = time.perf_counter()
    stats = make_shapes(args.out, args.train, args.val, size=args.size, seed=args.seed)
    took = time.perf_counter() - start
    for split in ("train", "val"):
        s = stats[split]
        classes = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        occl = s["occluded"] / max(s["objects"], 1)
        print(
            f"{split}: {s['images']} images, {s['objects']} objects ({classes}); "
            f"{occl:.0%} partly occluded; {s['polygons']} polygons, {s['rle']} RLE"
        )
    print(f"wrote {stats['out']} in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
