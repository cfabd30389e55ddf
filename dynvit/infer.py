"""``forge-infer dynvit IMAGE... --checkpoint FILE --out PNG_OR_DIR``: classify images with a trained ViT.

The model and its input geometry come from the run's saved ``config.yaml`` (next to the checkpoint, or
``--config``). For the digits models the image is turned grey, inverted when it is dark-on-light (the digits are
light-on-dark) and resized to the model's input; for folder-dataset models the validation transform of the config
is applied. Either gives pixel values, which the model's own data preprocessor normalises (as in training). The
output PNG shows the image and the top-5 classes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

from forge.inference import load_model


def _preprocess(image: Image.Image, cfg) -> torch.Tensor:
    """``(C, H, W)`` pixel values of ``image`` as the run's validation data (not normalised)."""
    dataset = cfg.dataset
    transform = dataset.get("val", {}).get("transform")
    if transform is not None:
        from hydra.utils import instantiate

        x = instantiate(transform)(image.convert("RGB"))
        return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    size, chans = int(dataset.img_size), int(dataset.in_chans)
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if grey.mean() > 0.5:
        grey = 1.0 - grey
    x = torch.from_numpy(np.array(Image.fromarray((grey * 255).astype(np.uint8)).resize((size, size),
                                                                                     Image.BILINEAR)))
    return x.float().unsqueeze(0).repeat(chans, 1, 1)


def class_probabilities(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` pixel values -> ``(num_classes,)`` softmax, normalised by the model's own data preprocessor."""
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=x[None], data_samples=None), False)
        return model(data["inputs"], mode="tensor").softmax(-1)[0]


def _draw(image: Image.Image, top: list[tuple[str, float]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 3))
    a.imshow(image.convert("RGB"))
    a.set_axis_off()
    a.set_title(f"{top[0][0]} ({top[0][1]:.1%})")
    names, probs = zip(*top)
    b.barh(range(len(top))[::-1], probs, color="tab:blue")
    b.set_yticks(range(len(top))[::-1], names)
    b.set_xlim(0, 1)
    b.set_xlabel("probability")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="forge-infer dynvit", description="Classify images with a dynvit ViT.")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", help="the run's config.yaml (default: next to the checkpoint)")
    parser.add_argument("--out", required=True, help="a PNG for one image, or a folder")
    parser.add_argument("--json", help="write the top-5 predictions of every image here")
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        model, cfg = load_model(args.checkpoint, args.config)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    classes = list(cfg.dataset.get("classes") or [str(i) for i in range(int(cfg.dataset.num_classes))])
    many = len(args.images) > 1 or os.path.isdir(args.out)
    if many:
        os.makedirs(args.out, exist_ok=True)
    results = {}
    for path in args.images:
        try:
            with Image.open(path) as im:
                image = im.copy()
        except OSError as err:
            print(f"error: cannot read image {path!r}: {err}", file=sys.stderr)
            sys.exit(2)
        probs = class_probabilities(model, _preprocess(image, cfg))
        k = min(args.topk, probs.numel())
        values, idx = probs.topk(k)
        top = [(classes[i], float(v)) for v, i in zip(values.tolist(), idx.tolist())]
        out = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + ".png") if many else args.out
        _draw(image, top, out)
        results[path] = top
        print(f"{path}: " + ", ".join(f"{n} {p:.3f}" for n, p in top) + f"  -> {out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
