"""``forge-infer yolact IMAGE... --checkpoint FILE --out PNG_OR_DIR [--model NAME] [--json RESULTS]``.

Runs a YOLACT / YOLACT++ checkpoint (one of ours or an official release such as ``yolact_base_54_800000.pth``;
the architecture is recognised from the keys and shapes, or named with ``--model``) on images, draws masks, boxes,
labels and scores to PNG, and optionally writes COCO results as ``forge-test`` does with ``outfile_prefix``:
``RESULTS.bbox.json`` (boxes, box scores) and ``RESULTS.segm.json`` (masks as RLE, scored with the YOLACT++ mask
score where the model re-scores), each readable by ``forge-eval coco --dt``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image

from forge.config import CONFIG_FILENAME
from forge.data.structures import DetSample
from forge.evaluation.coco import detections_to_coco
from forge.inference import InferCommand, output_paths, val_preprocess
from forge.vis.draw import draw_instances

from .configs import COCO_CATEGORY_IDS, COCO_CLASSES, OFFICIAL_MODELS
from .convert import load_model
from .postprocess import NMS_KINDS
from .preprocess import preprocess_image

CLI = InferCommand("forge-infer yolact")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forge-infer yolact", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or an official *_54_800000.pth")
    p.add_argument("--out", required=True, help="PNG file (one image) or output directory")
    p.add_argument("--model", choices=sorted(OFFICIAL_MODELS), help="architecture (default: from the checkpoint)")
    p.add_argument("--config", help="a training run's config.yaml (default: the one next to the checkpoint, if any)")
    p.add_argument("--json", dest="json_path", metavar="RESULTS",
                   help="write COCO results to RESULTS.bbox.json and RESULTS.segm.json (a .json suffix is dropped)")
    p.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold (JSON keeps everything)")
    p.add_argument("--nms", choices=NMS_KINDS, default="fast")
    p.add_argument("--max-size", type=int, default=None,
                   help="square input size with the original's transform (default: our run's pipeline.val, or the "
                        "official model's size)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def image_ids(paths: Sequence[str]) -> list[int]:
    """Image ids of the ``--json`` results, all different: the number ending each file name (``000000000139.jpg``
    -> 139, as COCO names its images) when every image has one and no two share it, else 1..N in the given order
    (two images of one name in different folders, or one image given twice, must not merge their detections)."""
    digits = [Path(p).stem.split("_")[-1] for p in paths]
    if all(d.isdigit() for d in digits) and len({int(d) for d in digits}) == len(paths):
        return [int(d) for d in digits]
    return list(range(1, len(paths) + 1))


def _run_categories(cfg, num_classes: int) -> tuple[list[str] | None, list[int] | None]:
    """Class names and category ids (label order) of a training run's dataset config, where it names them.

    The ids come from the categories of the run's annotation file (labels are in sorted id order), so a dataset
    with non-consecutive ids (COCO, the shapes set) writes the ids of its own json."""
    data = cfg.get("dataset") or {}
    names = list(data.get("classes") or []) or None
    cat_ids = None
    for split in ("val", "test", "train"):
        part = data.get(split)
        ann_file = part.get("ann_file") if isinstance(part, Mapping) else None
        if ann_file and os.path.isfile(ann_file):
            with open(ann_file) as f:
                cats = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
            if len(cats) == num_classes:
                names, cat_ids = names or [c["name"] for c in cats], [c["id"] for c in cats]
            break
    if names is not None and len(names) != num_classes:
        names = None
    return names, cat_ids


def run_preprocess(cfg, device: torch.device | str = "cpu"):
    """``image (H, W, 3) uint8 RGB, image_id, file_name -> (pixel values (1, 3, H', W') on device, ImageMeta)``
    through the run's own ``pipeline.val`` (:func:`forge.inference.val_preprocess`), so a run trained at another
    size or with a keep-ratio resize is fed what it was evaluated on; the model's data preprocessor normalises."""
    return val_preprocess(cfg, device, source="forge-infer yolact: the run's config")


def load_for_inference(checkpoint: str, model: str | None = None, config: str | None = None, nms: str = "fast"):
    """A YOLACT checkpoint as an eval-mode model: one of our runs (its ``config.yaml`` beside the checkpoint, or
    ``config``), else an official release or converted file (architecture from the keys, or ``model``).

    Returns:
        ``(model, description, run config or None)``.
    """
    if config is not None and not os.path.isfile(config):
        raise FileNotFoundError(f"--config {config!r} does not exist")
    config = config or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), CONFIG_FILENAME)
    if model is None and os.path.isfile(config):
        from forge.inference import load_model as load_run

        net, cfg = load_run(checkpoint, config)
        net.test_cfg["nms"] = nms
        return net, f"{net.backbone_name} ({config})", cfg
    net, name = load_model(checkpoint, model, nms=nms)
    return net, name, None


def _load(args: argparse.Namespace):
    """:func:`load_for_inference` plus the class names and category ids to write.

    Returns ``(model, description, class names or None, category ids per label, run config or None)``."""
    net, name, cfg = load_for_inference(args.checkpoint, args.model, args.config, args.nms)
    if cfg is not None:
        names, cat_ids = _run_categories(cfg, net.num_classes)
        if cat_ids is None and args.json_path:
            print(f"forge-infer yolact: the annotation file of {name} is not readable here; --json writes "
                  f"category_id = label + 1")
        return net, name, names, cat_ids or list(range(1, net.num_classes + 1)), cfg
    coco = net.num_classes == 80
    return (net, name, COCO_CLASSES if coco else None,
            list(COCO_CATEGORY_IDS) if coco else list(range(1, net.num_classes + 1)), None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    CLI.require_images(args.images)
    with CLI.loading(args.checkpoint):  # absent, unreadable, does not fit
        net, name, names, cat_ids, cfg = _load(args)
    net = net.to(args.device)
    max_size = args.max_size or net.max_size
    if cfg is not None and args.max_size is None:
        preprocess = run_preprocess(cfg, args.device)  # our run: its own val pipeline
    else:  # an official release: the original's evaluation transform

        def preprocess(image, image_id, file_name):
            return preprocess_image(image, max_size, image_id, file_name, args.device)
    outs = output_paths(args.images, args.out)
    results: dict[str, list[dict]] = {"bbox": [], "segm": []}
    for path, image_id, out in zip(args.images, image_ids(args.images), outs, strict=True):
        image = CLI.read_image(path)
        x, meta = preprocess(image, image_id, path)
        with torch.no_grad():  # test_step: the model's own data preprocessor normalises, then predict
            pred = net.test_step(dict(inputs=x, data_samples=[DetSample(meta=meta)]))[0].pred.to("cpu")
        drawn = draw_instances(image, pred.boxes, pred.labels, pred.scores, pred.masks, names,
                               score_threshold=args.score_thr)
        Image.fromarray(drawn).save(out)
        shown = int((pred.scores >= args.score_thr).sum())
        print(f"{path}: {len(pred.scores)} detections ({shown} >= {args.score_thr}) -> {out}"
              + (f" (image_id {image_id})" if args.json_path else ""))
        if args.json_path:
            boxes, masks = detections_to_coco(meta.image_id, pred, cat_ids)
            results["bbox"] += boxes
            results["segm"] += masks
    if args.json_path:
        prefix = args.json_path[:-5] if args.json_path.endswith(".json") else args.json_path
        for kind, recs in results.items():
            with open(f"{prefix}.{kind}.json", "w") as f:
                json.dump(recs, f)
            print(f"{len(recs)} {kind} results ({name}) -> {prefix}.{kind}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
