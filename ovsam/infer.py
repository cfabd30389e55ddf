"""``forge-infer ovsam IMAGE --checkpoint FILE --clip CLIP.pt (--box x0,y0,x1,y1 | --point x,y) ...
--vocab "a,b|c"|FILE --out PNG [--json R]``: segment and name what a box or point points at.

``FILE`` is a CLIP2SAM state dict (an official ``clip2sam_*_rn50x16.pth`` or one of ours); the frozen parts it may
lack come from ``--sam2clip`` (an official ``sam2clip_*.pth``) and ``--sam`` (a SAM checkpoint's prompt encoder);
``--clip`` (the CLIP the model was built on: OpenAI ``RN50x16.pt`` or a ``denseclip.save_clip`` file) gives the
text tower and, when the checkpoint has no ``backbone.*``, the image tower. Every ``--box`` / ``--point`` is one
prompt (points are positive). The vocabulary is comma-separated classes with ``|`` synonyms, or a file with one
class per line; its text classifier is cached. Scores fuse the head with frozen CLIP as the official model does
(classes in ``--base`` use head^0.9 * clip^0.1, all others head^0.1 * clip^0.9). The PNG shows each mask with its
best label; ``--json`` writes per prompt the mask (COCO RLE at the image size) and the top-5 labels with scores.
Bad input ends with exit status 2 and one line naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from denseclip import CLIPLoadError, load_clip
from edgesam import CheckpointError
from edgesam.build import read_checkpoint
from edgesam.transforms import ResizeLongestSide
from forge.inference import InferCommand
from forge.ops import mask_to_rle
from forge.vis.draw import draw_instances

from .backbone import CLIPResNetBackbone
from .checkpoint import load_groups, load_sam2clip, sam2clip_config
from .fusion import top_labels
from .model import CLIP2SAM, MASK_THRESHOLD, preprocess
from .vocab import normalise, read_vocabulary, vocabulary_classifier

PROG = "forge-infer ovsam"
CLI = InferCommand(PROG)
_fail = CLI.fail


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("--checkpoint", required=True, help="CLIP2SAM state dict")
    p.add_argument("--clip", required=True, help="CLIP weights (text tower; image tower if the checkpoint lacks it)")
    p.add_argument("--sam2clip", help="SAM2CLIP file, when the checkpoint has no neck.* keys")
    p.add_argument("--sam", help="SAM checkpoint for the prompt encoder, when the checkpoint has no pe.* keys")
    p.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1 in image pixels (repeatable)")
    p.add_argument("--point", action="append", default=[], help="x,y in image pixels (repeatable)")
    p.add_argument("--vocab", required=True, help='"cat,sofa|couch" or a file with one class per line')
    p.add_argument("--base", default="", help="comma-separated vocabulary classes seen in training")
    p.add_argument("--templates", default="paper", help="paper | imagenet | single | FILE")
    p.add_argument("--cache-dir", help="text-classifier cache folder")
    p.add_argument("--out", required=True, help="overlay PNG")
    p.add_argument("--json", dest="json_path", metavar="R", help="write masks (RLE) and top-5 labels")
    p.add_argument("--device", default="cpu")
    return p


def _numbers(flag: str, text: str, n: int, h: int, w: int) -> list[float]:
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    if len(v) != n or not all(np.isfinite(v)):
        _fail(f"{flag} {text!r} is not {'x,y' if n == 2 else 'x0,y0,x1,y1'} (numbers in pixels)")
    if not all(0 <= x <= w for x in v[0::2]) or not all(0 <= y <= h for y in v[1::2]):
        _fail(f"{flag} {text!r} is outside the {w}x{h} image")
    if n == 4 and (v[2] <= v[0] or v[3] <= v[1]):
        _fail(f"--box {text!r} is empty or inverted (need x0 < x1 and y0 < y1)")
    return v


def build_model(args: argparse.Namespace):
    """(model, loaded CLIP) from the files on the command line; errors exit 2 naming the file."""
    with CLI.exits_on(FileNotFoundError, CLIPLoadError):
        clip = load_clip(None, args.clip)
    if clip.is_vit:
        _fail(f"CLIP {args.clip!r} is a ViT; OVSAM's backbone is a CLIP ResNet (RN50x16 in the paper)")
    with CLI.exits_on(CheckpointError):
        state = read_checkpoint(args.checkpoint)
        side = None
        if not any(k.startswith("neck.") for k in state):
            if not args.sam2clip:
                _fail(f"checkpoint {args.checkpoint!r} has no neck.* (SAM2CLIP) keys: give --sam2clip FILE")
            side = read_checkpoint(args.sam2clip)
            cfg = sam2clip_config(side, "neck_student.")
        else:
            cfg = sam2clip_config(state)
        size = cfg.pop("input_size")
        model = CLIP2SAM(CLIPResNetBackbone(clip.model.visual), embed_dim=cfg.pop("embed_dim"), input_size=size,
                         sam2clip_kwargs=cfg)
        load_groups(model, state, ["fpn_neck", "mask_decoder"], ["backbone", "neck", "pe"], args.checkpoint)
        if side is not None:
            load_sam2clip(model, args.sam2clip, into="clip2sam")
        if not any(k.startswith("pe.") for k in state):
            if not args.sam:
                _fail(f"checkpoint {args.checkpoint!r} has no pe.* (prompt encoder) keys: give --sam FILE")
            sam = {k[len("prompt_encoder."):]: v for k, v in read_checkpoint(args.sam).items()
                   if k.startswith("prompt_encoder.")}
            load_groups(model, {"pe." + k: v for k, v in sam.items()}, ["pe"], [], args.sam)
    return model.to(args.device).eval(), clip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.box or args.point):
        _fail("empty prompt: give --box x0,y0,x1,y1 or --point x,y")
    if args.box and args.point:
        _fail("give --box or --point prompts, not both (one kind per run, as the official model)")
    image = CLI.read_image(args.image)
    h, w = image.shape[:2]
    boxes = [_numbers("--box", t, 4, h, w) for t in args.box]
    points = [_numbers("--point", t, 2, h, w) for t in args.point]
    with CLI.exits_on(ValueError):
        classes = read_vocabulary(args.vocab)
        base_names = {normalise(n) for n in args.base.split(",") if n.strip()}
        known = {normalise(n) for c in classes for n in c}
        unknown = sorted(base_names - known)
        if unknown:
            raise ValueError(f"--base names {', '.join(unknown)} are not in the vocabulary")
    model, clip = build_model(args)
    with CLI.exits_on(ValueError, FileNotFoundError):
        classifier = vocabulary_classifier(clip, classes, args.templates, cache_dir=args.cache_dir,
                                           log=lambda s: print(s, file=sys.stderr))
    base = torch.tensor([normalise(c[0]) in base_names for c in classes])
    x, (rh, rw) = preprocess(image, model.input_size)
    resize = ResizeLongestSide(model.input_size)
    kw: dict[str, Any] = {}
    if boxes:
        kw["boxes"] = resize.apply_boxes(torch.tensor(boxes, dtype=torch.float32), (h, w)).to(args.device)
    else:
        kw["points"] = resize.apply_coords(torch.tensor(points, dtype=torch.float32), (h, w))[:, None].to(args.device)
    pred = model.predict(x.to(args.device), classifier.to(args.device), base=base, **kw)
    masks = F.interpolate(pred.low_res_masks, size=(model.input_size,) * 2, mode="bilinear", align_corners=False)
    masks = F.interpolate(masks[..., :rh, :rw], size=(h, w), mode="bilinear", align_corners=False)
    masks = (masks[:, 0].sigmoid() > MASK_THRESHOLD).cpu().numpy()
    scores, idx = top_labels(pred.scores.cpu(), 5)
    names = [c[0] for c in classes]
    results = [{"prompt": {"box": b} if boxes else {"point": p},
                "segmentation": rle,
                "labels": [{"name": names[int(i)], "score": float(s)} for s, i in zip(sc, ix)]}
               for b, p, rle, sc, ix in zip(boxes or [None] * len(points), points or [None] * len(boxes),
                                            mask_to_rle(torch.from_numpy(masks)), scores, idx)]
    drawn = draw_instances(image, masks=masks, labels=idx[:, 0].numpy(), scores=scores[:, 0].numpy(),
                           class_names=names)
    pil = Image.fromarray(drawn)
    draw = ImageDraw.Draw(pil)
    for b in boxes:
        draw.rectangle(b, outline=(255, 255, 255), width=2)
    for px, py in points:
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=(0, 200, 0), outline=(255, 255, 255))
    CLI.save_image(pil, args.out)
    for r in results:
        top = r["labels"][0]
        print(f"{args.image}: {r['prompt']} -> {top['name']} ({top['score']:.3f}) -> {args.out}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
