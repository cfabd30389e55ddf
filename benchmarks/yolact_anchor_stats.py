"""How many anchors each ground-truth object gets as positives under YOLACT's matching, for anchor settings.

    python benchmarks/yolact_anchor_stats.py data/shapes/annotations/instances_train.json --size 256

Small objects at a small input size may end up with only the forced best anchor; the number of positives per
object drives how fast the box/class/coefficient heads learn. Compares four settings at input ``--size``:
pixel scales 24-384 (the original's, i.e. 3x the level stride) or the same scaled by ``size/550``, each with the
original YOLACT square-anchor quirk or real rectangles. Prints a markdown table and writes it, with the data, date
and command, into its section of docs/benchmarks.md (``<!-- yolact-anchor-stats:begin/end -->``; ``--no-write``:
print only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

import torch

from forge.docsection import machine_line, replace_section
from yolact.anchors import level_scales, make_anchors
from yolact.matching import match_anchors

ORIGINAL_SCALES = (24, 48, 96, 192, 384)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grids(size: int) -> list[tuple[int, int]]:
    """P3-P7 grid sizes for a square input, as the ResNet-FPN produces them (strides 8 ... 128, ceil)."""
    out, side = [], size
    for stride in (2, 2, 2):  # conv1, maxpool, layer2 -> stride 8
        side = (side + 1) // stride
    for _ in range(5):
        out.append((side, side))
        side = (side + 1) // 2
    return out


def positives_per_object(ann_file: str, size: int, scales, square: bool, limit: int) -> list[int]:
    data = json.load(open(ann_file))
    images = {im["id"]: im for im in data["images"]}
    per_image = defaultdict(list)
    for ann in data["annotations"]:
        if not ann.get("iscrowd", 0):
            per_image[ann["image_id"]].append(ann)
    anchors = make_anchors(grids(size), level_scales(scales), (1.0, 0.5, 2.0), max_size=size, square=square)
    counts = []
    for image_id in sorted(per_image)[:limit]:
        im = images[image_id]
        boxes = torch.tensor([[a["bbox"][0] / im["width"], a["bbox"][1] / im["height"],
                               (a["bbox"][0] + a["bbox"][2]) / im["width"],
                               (a["bbox"][1] + a["bbox"][3]) / im["height"]] for a in per_image[image_id]])
        labels = torch.zeros(len(boxes), dtype=torch.long)
        conf, gt_idx = match_anchors(boxes, labels, anchors)
        pos = gt_idx[conf > 0]
        counts += torch.bincount(pos, minlength=len(boxes)).tolist()
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ann_file", help="COCO-format instances json")
    parser.add_argument("--size", type=int, default=256, help="network input size (default 256)")
    parser.add_argument("--images", type=int, default=500, help="images to use (default 500)")
    parser.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="where the section goes")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    scaled = tuple(int(s * args.size / 550) for s in ORIGINAL_SCALES)
    lines = ["| anchor pixel scales | anchors | positives per object: mean | median | objects with 1 positive |",
             "|---|---|---:|---:|---:|"]
    objects = 0
    for scales in (ORIGINAL_SCALES, scaled):
        for square in (True, False):
            counts = positives_per_object(args.ann_file, args.size, scales, square, args.images)
            objects = len(counts)
            one = sum(c == 1 for c in counts) / len(counts)
            lines.append(f"| {'/'.join(map(str, scales))} | {'square (YOLACT quirk)' if square else 'rectangles'} | "
                         f"{statistics.mean(counts):.1f} | {statistics.median(counts):g} | {one:.0%} |")
    print(f"{args.ann_file}, input {args.size} px, first {args.images} images\n")
    print("\n".join(lines))
    if args.no_write:
        return
    given = argv if argv is not None else sys.argv[1:]
    body = "\n".join([
        f"Data: `{args.ann_file}`, the first {args.images} images with objects ({objects} non-crowd objects), "
        f"input {args.size} px. Made on {machine_line()}.",
        "",
        f"Command: `{' '.join(['python benchmarks/yolact_anchor_stats.py', *given])}`",
        "",
        *lines,
    ])
    replace_section(args.md, "yolact-anchor-stats", body)
    print(f"\nwrote section yolact-anchor-stats of {args.md}")


if __name__ == "__main__":
    main()
