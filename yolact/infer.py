"""``forge-infer yolact IMAGE... --checkpoint FILE --out PNG_OR_DIR [--model NAME] [--json RESULTS]``.

Runs a YOLACT / YOLACT++ checkpoint (one of ours or an official release such as ``yolact_base_54_800000.pth``;
the architecture is recognised from the keys and shapes, or named with ``--model``) on images, draws masks, boxes,
labels and scores to PNG, and optionally writes COCO-style results (``bbox`` xywh, ``segmentation`` RLE, ``score``
= box score, ``mask_score`` for YOLACT++).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from forge.data.structures import DetSample
from forge.vis.draw import draw_instances

from .configs import COCO_CATEGORY_IDS, COCO_CLASSES, OFFICIAL_MODELS
from .convert import load_model
from .postprocess import NMS_KINDS
from .preprocess import preprocess_image


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forge-infer yolact", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or an official *_54_800000.pth")
    p.add_argument("--out", required=True, help="PNG file (one image) or output directory")
    p.add_argument("--model", choices=sorted(OFFICIAL_MODELS), help="architecture (default: from the checkpoint)")
    p.add_argument("--config", help="a training run's config.yaml (default: the one next to the checkpoint, if any)")
    p.add_argument("--json", dest="json_path", help="write COCO-style results to this file")
    p.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold (JSON keeps everything)")
    p.add_argument("--nms", choices=NMS_KINDS, default="fast")
    p.add_argument("--max-size", type=int, default=None, help="input size (default: the model's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def _image_id(path: str, index: int) -> int:
    stem = Path(path).stem
    digits = stem.split("_")[-1]
    return int(digits) if digits.isdigit() else index


def coco_records(pred, image_id: int, cat_ids: Sequence[int]) -> list[dict]:
    """COCO results for one image's :class:`Detections`; ``cat_ids[label]`` is the category id of a label."""
    from pycocotools import mask as mask_utils

    recs = []
    masks = pred.masks.cpu().numpy() if pred.masks is not None else None
    for i in range(len(pred.scores)):
        x1, y1, x2, y2 = (float(v) for v in pred.boxes[i])
        label = int(pred.labels[i])
        rec = {"image_id": image_id,
               "category_id": int(cat_ids[label]),
               "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
               "score": round(float(pred.scores[i]), 5)}
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            rec["segmentation"] = rle
        if pred.mask_scores is not None:
            rec["mask_score"] = round(float(pred.mask_scores[i]), 5)
        recs.append(rec)
    return recs


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


def _load(args: argparse.Namespace):
    """Our training run (config.yaml next to the checkpoint or ``--config``) or any checkpoint recognised by keys.

    Returns ``(model, description, class names or None, category ids per label)``."""
    config = args.config or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "config.yaml")
    if args.model is None and os.path.isfile(config):
        from forge.inference import load_model as load_run

        net, cfg = load_run(args.checkpoint, config)
        net.test_cfg["nms"] = args.nms
        names, cat_ids = _run_categories(cfg, net.num_classes)
        if cat_ids is None and args.json_path:
            print(f"forge-infer yolact: the annotation file of {config} is not readable here; --json writes "
                  f"category_id = label + 1")
        return net, f"{net.backbone_name} ({config})", names, cat_ids or list(range(1, net.num_classes + 1))
    net, name = load_model(args.checkpoint, args.model, nms=args.nms)
    coco = net.num_classes == 80
    return (net, name, COCO_CLASSES if coco else None,
            list(COCO_CATEGORY_IDS) if coco else list(range(1, net.num_classes + 1)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"forge-infer yolact: image(s) not found: {', '.join(missing)}")
    net, name, names, cat_ids = _load(args)
    net = net.to(args.device)
    max_size = args.max_size or net.max_size
    single_png = len(args.images) == 1 and args.out.lower().endswith(".png")
    if not single_png:
        os.makedirs(args.out, exist_ok=True)
    results = []
    for index, path in enumerate(args.images):
        image = np.asarray(Image.open(path).convert("RGB"))
        x, meta = preprocess_image(image, max_size, net.backbone_name, _image_id(path, index), path, args.device)
        with torch.no_grad():
            pred = net(x, [DetSample(meta=meta)], mode="predict")[0].pred.to("cpu")
        drawn = draw_instances(image, pred.boxes, pred.labels, pred.scores, pred.masks, names,
                               score_threshold=args.score_thr)
        out = args.out if single_png else os.path.join(args.out, Path(path).stem + ".png")
        Image.fromarray(drawn).save(out)
        shown = int((pred.scores >= args.score_thr).sum())
        print(f"{path}: {len(pred.scores)} detections ({shown} >= {args.score_thr}) -> {out}")
        if args.json_path:
            results += coco_records(pred, meta.image_id, cat_ids)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(results, f)
        print(f"{len(results)} results ({name}) -> {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
