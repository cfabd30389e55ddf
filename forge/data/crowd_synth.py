"""Synthetic crowded-pedestrian set in CrowdHuman's ``.odgt`` layout: download-free data for crowded detection.

``python -m forge.data.crowd_synth OUT --train N --val M [--width 320 --height 240 --seed 0]`` (or
:func:`make_crowd_synth`) writes::

    OUT/Images/<ID>.png          OUT/annotation_train.odgt   OUT/annotation_val.odgt
    OUT/crowd_synth_meta.json    (the generation parameters; see :func:`crowd_synth_ready`)

Each image shows upright figures (a head disc over a coloured body with legs, dark outline, each figure its own
colour) on a textured background, painted far to near (by the bottom edge), so nearer figures occlude farther ones:

* **crowds**: 1-3 groups of 2-4 figures of similar size standing side by side, each shifted from its neighbour by
  15-45 % of its width, so the full-body boxes of neighbours overlap with IoU of up to about 0.75 (in the default
  600-image train split 18 % of the persons overlap a neighbour above 0.5, where greedy NMS at 0.5 removes one of
  the two);
* 0-3 isolated figures;
* with probability ``ignore_prob`` an **ignore region**: a patch of tiny figures annotated as one ``tag: "mask"``
  box (CrowdHuman's crowd regions), and figures smaller than ``min_height`` are written with ``extra.ignore: 1``.

Annotations per figure: ``fbox`` (full body, may extend past the image as in CrowdHuman), ``vbox`` (tight box of
its visible pixels), ``hbox`` (head), ``extra.occ`` (1 when less than 70 % is visible). Figures less than
``min_visible`` visible are re-placed. Deterministic: image ``i`` of a split depends only on
``(seed, split, i, width, height)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["crowd_synth_ready", "make_crowd_synth", "render_crowd_image"]

META_FILE = "crowd_synth_meta.json"
_SPLIT_SEED = {"train": 1, "val": 2}


@dataclass
class _Figure:
    x: float  # left of the full body
    y: float  # top of the head
    w: float
    h: float
    color: tuple[int, int, int]
    ignore: bool = False

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.x + self.w, self.y + self.h

    def head(self) -> tuple[float, float, float, float]:
        r = 0.34 * self.w
        cx = self.x + self.w / 2
        return cx - r, self.y, cx + r, self.y + 2 * r


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(60, 200, size=3)
    ramp = rng.uniform(-50, 50, size=3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = base + ramp * t + rng.normal(0, 12, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    c = rng.uniform(0, 255, size=3)
    c[rng.integers(3)] = rng.uniform(200, 255)  # saturated, so neighbours differ
    return tuple(int(v) for v in c)


def _paint(draw: ImageDraw.ImageDraw, ids: ImageDraw.ImageDraw | None, f: _Figure, label: int) -> None:
    """Head, torso and two legs; ``ids`` receives the figure's index (visibility map)."""
    x1, y1, x2, y2 = f.box
    hx1, hy1, hx2, hy2 = f.head()
    torso = (x1, hy2 - 0.02 * f.h, x2, y1 + 0.6 * f.h)
    gap = 0.12 * f.w
    legs = [(x1 + 0.08 * f.w, torso[3], x1 + f.w / 2 - gap / 2, y2), (x1 + f.w / 2 + gap / 2, torso[3],
                                                                       x2 - 0.08 * f.w, y2)]
    dark = tuple(int(c * 0.45) for c in f.color)
    for target, fill, outline in ((draw, f.color, (20, 20, 20)), (ids, label, None)):
        if target is None:
            continue
        target.rectangle(torso, fill=fill, outline=outline)
        for leg in legs:
            target.rectangle(leg, fill=dark if target is draw else fill, outline=outline)
        target.ellipse((hx1, hy1, hx2, hy2), fill=(236, 188, 150) if target is draw else fill, outline=outline)


def _place_group(rng: np.random.Generator, w: int, h: int, n: int) -> list[_Figure]:
    fh = rng.uniform(0.35, 0.75) * h
    fw = fh * rng.uniform(0.36, 0.44)
    x = rng.uniform(-0.1 * fw, max(w - fw * (1 + 0.45 * (n - 1)), 1.0))
    y = rng.uniform(0.02 * h, max(h - fh, 0.03 * h))
    out = []
    for _ in range(n):
        s = fh * rng.uniform(0.92, 1.08)
        out.append(_Figure(x, y + rng.uniform(-0.04, 0.04) * fh, s * fw / fh, s, _color(rng)))
        x += fw * rng.uniform(0.15, 0.45)
    return out


def _single(rng: np.random.Generator, w: int, h: int) -> _Figure:
    fh = rng.uniform(0.3, 0.8) * h
    fw = fh * rng.uniform(0.36, 0.44)
    return _Figure(rng.uniform(-0.1 * fw, w - 0.9 * fw), rng.uniform(0.0, max(h - fh, 1.0)), fw, fh, _color(rng))


def render_crowd_image(rng: np.random.Generator, width: int = 320, height: int = 240, ignore_prob: float = 0.5,
                       min_height: float = 20.0, min_visible: float = 0.25,
                       max_tries: int = 30) -> tuple[np.ndarray, list[dict]]:
    """One image ``(H, W, 3)`` uint8 RGB and its CrowdHuman ``gtboxes`` (see the module docstring)."""
    figures: list[_Figure] = []
    for _ in range(int(rng.integers(1, 4))):
        figures += _place_group(rng, width, height, int(rng.integers(2, 5)))
    figures += [_single(rng, width, height) for _ in range(int(rng.integers(0, 4)))]
    ignore_box = None
    if rng.random() < ignore_prob:
        pw, ph = rng.uniform(0.2, 0.35) * width, rng.uniform(0.12, 0.2) * height
        px, py = rng.uniform(0, width - pw), rng.uniform(0, height - ph)
        ignore_box = (px, py, pw, ph)
    for _attempt in range(max_tries):  # re-draw until every figure is visible enough
        order = sorted(range(len(figures)), key=lambda i: figures[i].box[3])
        ids = Image.new("I", (width, height), -1)
        idraw = ImageDraw.Draw(ids)
        for i in order:
            _paint_ids(idraw, figures[i], i)
        vis = np.asarray(ids)
        full = np.array([_full_pixels(f, width, height) for f in figures], dtype=np.float64)
        counts = np.bincount(vis[vis >= 0].ravel(), minlength=len(figures))[: len(figures)]
        frac = counts / np.maximum(full, 1)
        bad = [i for i in range(len(figures)) if frac[i] < min_visible]
        if not bad:
            break
        for i in bad:
            figures[i] = _single(rng, width, height)
    else:  # still hidden after max_tries: leave those figures out
        figures = [f for f, v in zip(figures, frac, strict=True) if v >= min_visible]
    return render_from(rng, figures, width, height, ignore_box, min_height)


def _full_pixels(f: _Figure, width: int, height: int) -> int:
    im = Image.new("L", (width, height), 0)
    _paint_ids(ImageDraw.Draw(im), f, 1)
    return int((np.asarray(im) > 0).sum())


def _paint_ids(target: ImageDraw.ImageDraw, f: _Figure, label: int) -> None:
    _paint(None, target, f, label)  # type: ignore[arg-type]


def render_from(rng: np.random.Generator, figures: list[_Figure], width: int, height: int,
                ignore_box: tuple[float, float, float, float] | None,
                min_height: float) -> tuple[np.ndarray, list[dict]]:
    """Paint ``figures`` (far to near) and an optional ignore patch; return the image and its ``gtboxes``."""
    img = Image.fromarray(_background(rng, height, width))
    draw = ImageDraw.Draw(img)
    gtboxes: list[dict] = []
    if ignore_box is not None:  # a distant crowd: tiny figures, one "mask" region
        px, py, pw, ph = ignore_box
        for _ in range(int(rng.integers(8, 16))):
            th = rng.uniform(0.5, 0.9) * ph
            tw = th * 0.4
            _paint(draw, None, _Figure(px + rng.uniform(0, max(pw - tw, 1)), py + rng.uniform(0, ph - th), tw, th,
                                       _color(rng)), 0)
        gtboxes.append(dict(tag="mask", fbox=_r([px, py, pw, ph]), vbox=_r([px, py, pw, ph]),
                            hbox=_r([px, py, pw, ph]), extra=dict(ignore=1), head_attr=dict(ignore=1)))
    order = sorted(range(len(figures)), key=lambda i: figures[i].box[3])
    ids = Image.new("I", (width, height), -1)
    idraw = ImageDraw.Draw(ids)
    for i in order:
        _paint(draw, None, figures[i], i)
        _paint_ids(idraw, figures[i], i)
    vis = np.asarray(ids)
    for i, f in enumerate(figures):
        ys, xs = np.nonzero(vis == i)
        if xs.size == 0:
            continue
        full = _full_pixels(f, width, height)
        vbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
        hx1, hy1, hx2, hy2 = f.head()
        small = f.h < min_height
        gtboxes.append(dict(tag="person", fbox=_r([f.x, f.y, f.w, f.h]), vbox=_r(vbox),
                            hbox=_r([hx1, hy1, hx2 - hx1, hy2 - hy1]),
                            extra=dict(box_id=i, occ=int(xs.size < 0.7 * full), ignore=int(small)),
                            head_attr=dict(ignore=0, occ=0)))
    return np.asarray(img), gtboxes


def _r(box: list[float]) -> list[float]:
    return [round(float(v), 2) for v in box]


def crowd_synth_ready(out: str, **params: object) -> bool:
    """Whether ``out`` holds a set generated with exactly ``params`` (so it need not be generated again)."""
    try:
        with open(os.path.join(out, META_FILE)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    files = [os.path.join(out, f"annotation_{s}.odgt") for s in ("train", "val")]
    return all(meta.get(k) == v for k, v in params.items()) and all(map(os.path.isfile, files))


def make_crowd_synth(out: str, num_train: int = 600, num_val: int = 100, width: int = 320, height: int = 240,
                     seed: int = 0, ignore_prob: float = 0.5) -> dict:
    """Write the set into ``out`` (see the module docstring); returns the parameters recorded in its meta file."""
    for name, v in (("num_train", num_train), ("num_val", num_val)):
        if v < 0:
            raise ValueError(f"make_crowd_synth: {name} must be >= 0, got {v}")
    if width < 64 or height < 64:
        raise ValueError(f"make_crowd_synth: width and height must be >= 64, got {width}x{height}")
    os.makedirs(os.path.join(out, "Images"), exist_ok=True)
    for split, n in (("train", num_train), ("val", num_val)):
        lines = []
        for i in range(n):
            rng = np.random.default_rng([seed, _SPLIT_SEED[split], i, width, height])
            img, gtboxes = render_crowd_image(rng, width, height, ignore_prob)
            image_id = f"{split}_{i:06d}"
            Image.fromarray(img).save(os.path.join(out, "Images", image_id + ".png"))
            lines.append(json.dumps(dict(ID=image_id, width=width, height=height, gtboxes=gtboxes)))
        with open(os.path.join(out, f"annotation_{split}.odgt"), "w") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
    meta = dict(train=num_train, val=num_val, width=width, height=height, seed=seed, ignore_prob=ignore_prob)
    with open(os.path.join(out, META_FILE), "w") as f:
        json.dump(meta, f)
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m forge.data.crowd_synth", description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        meta = make_crowd_synth(a.out, a.train, a.val, a.width, a.height, a.seed)
    except (OSError, ValueError) as err:
        print(f"error: crowd_synth: {err}", file=sys.stderr)
        return 2
    print(f"crowd_synth: {meta} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
