"""``forge-infer nohnms IMAGE... --checkpoint FILE --out PNG_OR_DIR [--nms greedy|noh] [--show-neighbours]``.

Runs a NOH-NMS detector trained with ``forge-train`` (its ``config.yaml`` beside the checkpoint, or ``--config``) on
images through the run's own ``pipeline.val`` and draws the detections above ``--score-thr``; with
``--show-neighbours`` each kept box's hallucinated nearest neighbour is drawn too (dashed, with its overlap
probability), where that probability is above ``--neighbour-thr``. Bad input ends the command with one line naming
the file (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from forge.data.structures import DetSample
from forge.inference import InferCommand, output_paths, val_preprocess
from forge.vis.draw import draw_instances

from .model import NMS_KINDS, NohDetections

PROG = "forge-infer nohnms"
CLI = InferCommand(PROG)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of forge-train experiment=nohnms/...")
    p.add_argument("--out", required=True, help="PNG file (one image) or output directory")
    p.add_argument("--config", help="the run's config.yaml (default: the one next to the checkpoint)")
    p.add_argument("--nms", choices=NMS_KINDS, default=None, help="NMS (default: the run's model.nms)")
    p.add_argument("--score-thr", type=float, default=0.5, help="drawing threshold")
    p.add_argument("--show-neighbours", action="store_true", help="draw each kept box's hallucinated neighbour")
    p.add_argument("--neighbour-thr", type=float, default=0.3,
                   help="draw a neighbour when its overlap probability is above this (NOH-NMS eases above 0.3)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box, color, width: int = 2, dash: int = 6) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    for a, b, horizontal in (((x1, y1), (x2, y1), True), ((x1, y2), (x2, y2), True), ((x1, y1), (x1, y2), False),
                             ((x2, y1), (x2, y2), False)):
        start, end = (a[0], b[0]) if horizontal else (a[1], b[1])
        t = start
        while t < end:
            u = min(t + dash, end)
            draw.line([(t, a[1]), (u, a[1])] if horizontal else [(a[0], t), (a[0], u)], fill=color, width=width)
            t += 2 * dash


def draw_detections(image: np.ndarray, pred: NohDetections, score_thr: float = 0.5, neighbours: bool = False,
                    neighbour_thr: float = 0.3) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB with the detections scoring ``>= score_thr`` (and, with ``neighbours``, their
    hallucinated neighbours as dashed boxes labelled with the overlap probability)."""
    out = draw_instances(image, pred.boxes, pred.labels, pred.scores, None, ["person"], score_threshold=score_thr)
    if not neighbours or pred.overlap_boxes is None:
        return out
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    for box, score, p in zip(pred.overlap_boxes.tolist(), pred.scores.tolist(), pred.overlap_probs.tolist(),
                             strict=True):
        if score >= score_thr and p > neighbour_thr:
            _dashed_rectangle(draw, box, (255, 255, 255))
            draw.text((box[0] + 2, box[3] - 12), f"p={p:.2f}", fill=(255, 255, 255))
    return np.asarray(pil)


def load_for_inference(checkpoint: str, config: str | None = None, nms: str | None = None):
    """``(model in eval mode, run config)`` from a training run's checkpoint (``config.yaml`` beside it)."""
    from forge.inference import find_config, load_model

    if config is not None and not os.path.isfile(config):
        raise FileNotFoundError(f"--config {config!r} does not exist")
    net, cfg = load_model(checkpoint, find_config(checkpoint, config))
    if type(net).__name__ != "NohNmsRCNN":
        raise ValueError(f"{checkpoint}: its config builds {type(net).__name__}, not a NOH-NMS detector")
    if nms is not None:
        if nms == "noh" and net.roi_heads.overlap_head is None:
            raise ValueError(f"{checkpoint}: --nms noh needs a model trained with the hallucinator")
        net.nms = nms
    return net.eval(), cfg


def run_preprocess(cfg, device: torch.device | str = "cpu"):
    """``image (H, W, 3) uint8 RGB, image_id, file_name -> (pixel batch (1, 3, H', W') on device, ImageMeta)``
    through the run's ``pipeline.val`` and ``dataset.collate_fn`` (:func:`forge.inference.val_preprocess`; not
    normalised: the model's data preprocessor does that in ``test_step``). The meta carries the image's ``ID``."""
    return val_preprocess(cfg, device, with_masks=False, extra=lambda file_name: dict(ID=Path(file_name).stem))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    CLI.require_images(args.images)
    if not os.path.isfile(args.checkpoint):
        CLI.fail(f"checkpoint {args.checkpoint!r} does not exist")
    with CLI.loading(args.checkpoint):  # absent, unreadable, does not fit
        net, cfg = load_for_inference(args.checkpoint, args.config, args.nms)
        preprocess = run_preprocess(cfg, args.device)
    net = net.to(args.device)
    for i, (path, out) in enumerate(zip(args.images, output_paths(args.images, args.out), strict=True)):
        image = CLI.read_image(path)
        x, meta = preprocess(image, i, path)
        with torch.no_grad():  # test_step: the model's data preprocessor normalises, then predict
            pred = net.test_step(dict(inputs=x, data_samples=[DetSample(meta=meta)]))[0].pred.to("cpu")
        with CLI.exits_on(OSError, ValueError, prefix=f"cannot write {out!r}: "):
            Image.fromarray(draw_detections(image, pred, args.score_thr, args.show_neighbours,
                                            args.neighbour_thr)).save(out)
        shown = int((pred.scores >= args.score_thr).sum())
        print(f"{path}: {len(pred.scores)} detections ({shown} >= {args.score_thr}, {net.nms} NMS) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
