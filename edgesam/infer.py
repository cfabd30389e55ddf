"""``forge-infer edgesam IMAGE --checkpoint FILE (--box x0,y0,x1,y1 | --point x,y[,label] ... | --everything)
--out PNG [--model NAME] [--json RESULT]``: segment an image with SAM, MobileSAM or EdgeSAM.

``FILE`` is a released ``sam_vit_{b,l,h}_*.pth``, ``mobile_sam.pt`` or ``edge_sam*.pth`` (or a state dict of ours in
the same layout); the architecture is read from its keys unless ``--model`` names it. Prompts are in image pixels:
``--point x,y[,label]`` (label 1 foreground, the default, or 0 background; repeat for several points of one
object), ``--box x0,y0,x1,y1`` (repeat for several objects; one box may be combined with points), or
``--everything`` (automatic mask generation over a point grid). The PNG shows the masks over the image with the
prompts; ``--json`` writes a list of results, each with ``segmentation`` (COCO RLE at the image size) and
``iou_pred`` (with ``--everything`` also the generator's ``bbox``, ``area``, ``stability_score``,
``point_coords``, ``crop_box``). Bad input (image, checkpoint, prompt) ends with exit status 2 and one line naming
it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from edgesam.amg import SamAutomaticMaskGenerator
from edgesam.build import MODEL_NAMES, CheckpointError, build_sam
from edgesam.predictor import SamPredictor
from edgesam.sam import Sam
from forge.inference import InferCommand
from forge.ops import mask_to_rle, rle_to_mask
from forge.vis.draw import draw_instances

PROG = "forge-infer edgesam"
CLI = InferCommand(PROG)
_fail = CLI.fail


class UsageError(ValueError):
    """A bad command-line value; the message names it."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="image file (any format PIL reads; converted to RGB)")
    p.add_argument("--checkpoint", required=True, help="an official SAM / MobileSAM / EdgeSAM release or the like")
    p.add_argument("--model", choices=MODEL_NAMES, help="architecture (default: recognised from the keys)")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="a point prompt in pixels; label 1 (foreground, default) or 0 (background); repeatable")
    p.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="a box prompt in pixels; repeatable (one result each)")
    p.add_argument("--everything", action="store_true", help="automatic mask generation over a point grid")
    p.add_argument("--multimask", action="store_true",
                   help="return SAM's three masks for the prompt (default: three for a lone point, keeping the "
                        "best by predicted IoU; one otherwise)")
    p.add_argument("--points-per-side", type=int, default=32, help="--everything: grid size (default 32)")
    p.add_argument("--crop-layers", type=int, default=0, help="--everything: extra crop layers (default 0)")
    p.add_argument("--pred-iou-thresh", type=float, default=0.88, help="--everything (default 0.88)")
    p.add_argument("--stability-thresh", type=float, default=0.95, help="--everything (default 0.95)")
    p.add_argument("--out", required=True, help="overlay PNG")
    p.add_argument("--json", dest="json_path", metavar="RESULT", help="write the results here")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def _numbers(flag: str, text: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts or not all(np.isfinite(values)):
        shape = "x,y[,label]" if flag == "--point" else "x0,y0,x1,y1"
        raise UsageError(f"{flag} {text!r} is not {shape} (numbers in pixels)")
    return values


def parse_prompts(points: list[str], boxes: list[str], height: int, width: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(coords (P, 2), labels (P,), boxes (N, 4))`` from the ``--point`` / ``--box`` values, each checked against
    the ``width x height`` image; absent parts are None."""
    coords = labels = box_arr = None
    if points:
        parsed = [(_numbers("--point", t, (2, 3)), t) for t in points]
        for v, t in parsed:
            if len(v) == 3 and v[2] not in (0.0, 1.0):
                raise UsageError(f"--point {t!r}: label must be 1 (foreground) or 0 (background), got {v[2]:g}")
            if not (0 <= v[0] <= width and 0 <= v[1] <= height):
                raise UsageError(f"--point {t!r} is outside the {width}x{height} image")
        coords = np.array([v[:2] for v, _ in parsed], np.float64)
        labels = np.array([int(v[2]) if len(v) == 3 else 1 for v, _ in parsed], np.int64)
    if boxes:
        rows = []
        for t in boxes:
            x0, y0, x1, y1 = _numbers("--box", t, (4,))
            if not (0 <= x0 <= width and 0 <= x1 <= width and 0 <= y0 <= height and 0 <= y1 <= height):
                raise UsageError(f"--box {t!r} is outside the {width}x{height} image")
            if x1 <= x0 or y1 <= y0:
                raise UsageError(f"--box {t!r} is empty or inverted (need x0 < x1 and y0 < y1)")
            rows.append([x0, y0, x1, y1])
        box_arr = np.array(rows, np.float64)
        if coords is not None and len(rows) > 1:
            raise UsageError(f"--point with {len(rows)} --box values: points go with one box (one object)")
    return coords, labels, box_arr


def segment_prompts(predictor: SamPredictor, coords: np.ndarray | None, labels: np.ndarray | None,
                    boxes: np.ndarray | None, multimask: bool = False) -> list[dict[str, Any]]:
    """Results for the prompts on the predictor's current image: one per box (or one for points alone), three
    with ``multimask``; a lone point without ``multimask`` keeps the best of three by predicted IoU."""
    lone_point = boxes is None and coords is not None and len(coords) == 1
    results = []
    if boxes is not None and len(boxes) > 1:
        masks, iou, _ = predictor.predict(box=boxes, multimask_output=multimask)  # (N, K, H, W)
        for n in range(len(boxes)):
            results += _records(masks[n], iou[n], {"box": boxes[n].tolist()})
        return results
    masks, iou, _ = predictor.predict(coords, labels, None if boxes is None else boxes[0],
                                      multimask_output=multimask or lone_point)
    prompt: dict[str, Any] = {}
    if coords is not None:
        prompt.update(points=coords.tolist(), labels=labels.tolist())
    if boxes is not None:
        prompt["box"] = boxes[0].tolist()
    if lone_point and not multimask:
        best = int(np.argmax(iou))
        masks, iou = masks[best:best + 1], iou[best:best + 1]
    return _records(masks, iou, prompt)


def _records(masks: np.ndarray, iou: np.ndarray, prompt: dict) -> list[dict[str, Any]]:
    return [{"segmentation": rle, "iou_pred": float(s), "prompt": prompt}
            for rle, s in zip(mask_to_rle(masks), iou)]


def segment_everything(model: Sam, image: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    amg = SamAutomaticMaskGenerator(model, points_per_side=args.points_per_side, crop_n_layers=args.crop_layers,
                                    pred_iou_thresh=args.pred_iou_thresh,
                                    stability_score_thresh=args.stability_thresh)
    return [dict(r, iou_pred=r["predicted_iou"]) for r in amg.generate(image)]


def draw_results(image: np.ndarray, results: list[dict[str, Any]], coords: np.ndarray | None = None,
                 labels: np.ndarray | None = None, boxes: np.ndarray | None = None) -> np.ndarray:
    """The masks over the image (largest first, so small ones stay visible), the box prompts and the points
    (green foreground, red background)."""
    h, w = image.shape[:2]
    masks = rle_to_mask([r["segmentation"] for r in results]).numpy() if results else np.zeros((0, h, w), bool)
    order = np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable")
    drawn = draw_instances(image, masks=masks[order][::-1])  # draw_instances paints the first on top
    pil = Image.fromarray(drawn)
    draw = ImageDraw.Draw(pil)
    for b in [] if boxes is None else boxes:
        draw.rectangle([float(v) for v in b], outline=(255, 255, 255), width=2)
    r = max(3, round(max(h, w) / 150))
    for (x, y), lab in zip([] if coords is None else coords, [] if labels is None else labels):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 200, 0) if lab == 1 else (220, 0, 0),
                     outline=(255, 255, 255))
    return np.asarray(pil)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.everything and (args.point or args.box):
        _fail("--everything takes no --point / --box")
    if not (args.everything or args.point or args.box):
        _fail("empty prompt: give --point x,y[,label], --box x0,y0,x1,y1 or --everything")
    if args.points_per_side < 1 or args.crop_layers < 0:
        _fail(f"--points-per-side must be >= 1 and --crop-layers >= 0, got {args.points_per_side} / "
              f"{args.crop_layers}")
    image = CLI.read_image(args.image)
    h, w = image.shape[:2]
    with CLI.exits_on(UsageError):
        coords, labels, boxes = parse_prompts(args.point, args.box, h, w)
    with CLI.loading(args.checkpoint, CheckpointError, ValueError, prefix="checkpoint"):
        model = build_sam(args.model, args.checkpoint)
    if hasattr(model.image_encoder, "fuse"):  # EdgeSAM: fold BatchNorm and RepVGG branches (same outputs, faster)
        model.image_encoder.fuse()
    model = model.to(args.device)
    if args.everything:
        results = segment_everything(model, image, args)
    else:
        predictor = SamPredictor(model)
        predictor.set_image(image)
        results = segment_prompts(predictor, coords, labels, boxes, args.multimask)
    Image.fromarray(draw_results(image, results, coords, labels, boxes)).save(args.out)
    best = max((r["iou_pred"] for r in results), default=float("nan"))
    print(f"{args.image}: {len(results)} mask(s), best iou_pred {best:.3f} -> {args.out}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(results, f)
        print(f"{len(results)} results -> {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
