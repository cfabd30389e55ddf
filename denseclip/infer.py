"""``forge-infer denseclip IMAGE --classes "sky,tree,road" --checkpoint CLIP.pt --out PNG [options]``.

Segments one image into the given classes with MaskCLIP on a local CLIP file (an OpenAI ``.pt`` release, TorchScript
or state dict, or an open_clip checkpoint; the architecture is recognised from the keys, or checked against
``--model``), and writes a colour overlay with a legend. ``--labels`` also writes the per-pixel class index
(0..C-1, in ``--classes`` order) as a single-channel PNG at the input image's resolution.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from forge.inference import InferCommand

from .clip_loading import ARCH_ALIASES, CLIP_ARCHITECTURES, CLIPLoadError, load_clip
from .maskclip import PROTOCOLS, VARIANTS, MaskCLIP
from .overlay import draw_segmentation
from .refine import KS_THRESHOLD, PD_THRESHOLD
from .templates import TEMPLATE_SETS, resolve_templates
from .text_classifier import build_text_classifier, parse_class_names

# messages quote CLIP / open_clip errors, which may span lines: folded to one
CLI = InferCommand("forge-infer denseclip", squash_whitespace=True)
_fail = CLI.fail


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forge-infer denseclip", description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="image file")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "sky,tree,road"')
    p.add_argument("--checkpoint", required=True, help="CLIP weights: OpenAI .pt (TorchScript or state dict) or "
                                                       "an open_clip checkpoint")
    p.add_argument("--out", required=True, help="overlay PNG")
    p.add_argument("--model", choices=list(CLIP_ARCHITECTURES) + sorted(ARCH_ALIASES),
                   help="expected architecture (default: whatever the checkpoint holds)")
    p.add_argument("--templates", default="paper",
                   help=f"prompt templates: {' | '.join(TEMPLATE_SETS)} | FILE (one per line, with {{}})")
    p.add_argument("--short-side", type=int, default=512,
                   help="resize the image's short side to N for inference (0: keep the image as given)")
    p.add_argument("--key-smoothing", action="store_true", help=f"key smoothing (threshold {KS_THRESHOLD})")
    p.add_argument("--prompt-denoising", action="store_true", help=f"prompt denoising (threshold {PD_THRESHOLD})")
    p.add_argument("--labels", metavar="LABELS.png", help="also write class indices as a single-channel PNG")
    p.add_argument("--variant", choices=VARIANTS, default="maskclip", help="last-block variant (ViT CLIPs)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="official",
                   help="official: MaskCLIP's mean/std, GELU, LN eps; clip: CLIP's own preprocessing")
    p.add_argument("--slide", metavar="CROP,STRIDE",
                   help="sliding-window inference (e.g. 224,112) instead of the whole image")
    p.add_argument("--cache-dir", help="text-classifier cache (default $DENSECLIP_CACHE or ~/.cache/...)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize ``(H, W, 3)`` so that ``min(H, W) == short_side`` (bilinear, aspect kept); 0 keeps it as is."""
    if short_side <= 0:
        return image
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def _parse_slide(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        crop, stride = (int(v) for v in text.split(","))
    except ValueError:
        _fail(f"--slide {text!r}: expected CROP,STRIDE (two integers, e.g. 224,112)")
    if crop <= 0 or stride <= 0:
        _fail(f"--slide {text!r}: crop and stride must be positive")
    return crop, stride


def segment(net: MaskCLIP, image: np.ndarray, short_side: int = 512, slide: tuple[int, int] | None = None,
            device: str | torch.device = "cpu") -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` int64 class indices: inference at the resized size, scores resized
    bilinearly back to the input (mmseg's ``rescale``), then argmax."""
    small = resize_short_side(image, short_side)
    x = torch.from_numpy(np.array(small)).permute(2, 0, 1)[None].float().to(device)
    with torch.no_grad():
        scores = net(x) if slide is None else net(x, mode="slide", crop=slide[0], stride=slide[1])
        if scores.shape[-2:] != image.shape[:2]:
            scores = F.interpolate(scores, size=image.shape[:2], mode="bilinear", align_corners=False)
    return scores.argmax(dim=1)[0].cpu().numpy()


def write_labels(labels: np.ndarray, path: str, num_classes: int) -> None:
    """Single-channel PNG of class indices: 8-bit for up to 256 classes, else 16-bit."""
    if num_classes <= 256:
        Image.fromarray(labels.astype(np.uint8), mode="L").save(path)
    else:
        Image.fromarray(labels.astype(np.uint16)).save(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.short_side < 0:
        _fail(f"--short-side must be >= 0, got {args.short_side}")
    slide = _parse_slide(args.slide)
    with CLI.exits_on(OSError, ValueError):
        names = parse_class_names(args.classes)
        templates = resolve_templates(args.templates)
    if not os.path.isfile(args.image):
        _fail(f"image {args.image!r} not found")
    image = CLI.read_image(args.image)
    with CLI.exits_on(OSError, CLIPLoadError):
        clip = load_clip(args.model, args.checkpoint, device=args.device)
    emb = build_text_classifier(clip, names, templates, cache_dir=args.cache_dir)
    net = MaskCLIP(clip, emb, variant=args.variant if clip.is_vit else "maskclip", protocol=args.protocol,
                   key_smoothing=KS_THRESHOLD if args.key_smoothing else 0.0,
                   prompt_denoising=PD_THRESHOLD if args.prompt_denoising else 0.0).to(args.device)
    if args.variant != "maskclip" and not clip.is_vit:
        print(f"forge-infer denseclip: --variant {args.variant} needs a ViT CLIP; {clip.arch} runs maskclip")
    labels = segment(net, image, args.short_side, slide, args.device)
    with CLI.exits_on(OSError, ValueError, prefix="cannot write output: "):
        Image.fromarray(draw_segmentation(image, labels, names)).save(args.out)
        if args.labels:
            write_labels(labels, args.labels, len(names))
    refine = "+".join(n for n, on in (("KS", args.key_smoothing), ("PD", args.prompt_denoising)) if on) or "no KS/PD"
    print(f"{args.image}: {len(names)} classes, {clip.arch} ({args.variant if clip.is_vit else 'maskclip'}, "
          f"{refine}, {len(templates)} templates) -> {args.out}" + (f", {args.labels}" if args.labels else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
