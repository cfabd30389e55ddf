"""ONNX export of SAM / MobileSAM / EdgeSAM as two graphs, as the official SAM export splits them:

* the **image encoder**: ``image (1, 3, S, S)`` normalised and padded as ``Sam.preprocess`` returns it ->
  ``image_embeddings (1, 256, S/16, S/16)``;
* the **prompt encoder + mask decoder** with a dynamic number of points and the official ONNX inputs:
  ``image_embeddings``, ``point_coords (1, N, 2)`` (x, y in the resized, unpadded input frame, i.e.
  ``ResizeLongestSide.apply_coords``), ``point_labels (1, N)`` float (1 foreground, 0 background, -1 padding,
  2 / 3 top-left / bottom-right box corner), ``mask_input (1, 1, S/4, S/4)``, ``has_mask_input (1,)`` (1 to use
  the mask input), ``orig_im_size (2,)`` float (H, W) -> ``masks (1, K, H, W)`` logits at the original size,
  ``iou_predictions (1, K)``, ``low_res_masks (1, K, S/4, S/4)``; K = 4 (every mask token, as the official export)
  or 1 with ``return_single_mask`` (the official rule: the multimask output with the best predicted IoU for
  fewer than 3 points, token 0 otherwise).

As in the official export nothing pads the points: a caller without a box appends a ``(0, 0)`` point of label -1.

``python -m edgesam.export --checkpoint FILE [--model NAME] --out DIR [--check]`` writes
``DIR/<name>_encoder.onnx`` and ``DIR/<name>_decoder.onnx``; ``--check`` runs both in onnxruntime on a random
image and prompts and prints the largest differences to PyTorch (``check_export``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.build import MODEL_NAMES, CheckpointError, build_sam
from edgesam.sam import Sam

ENCODER_IO = (["image"], ["image_embeddings"])
DECODER_IO = (["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"],
              ["masks", "iou_predictions", "low_res_masks"])
OPSET = 17


class OnnxEncoder(nn.Module):
    """The image encoder alone (input already normalised and padded)."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, image: Tensor) -> Tensor:
        return self.image_encoder(image)


class OnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + resizing to the original image, traceable for any number of points."""

    def __init__(self, model: Sam, return_single_mask: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.img_size = model.img_size
        self.return_single_mask = return_single_mask

    def _select(self, masks: Tensor, iou: Tensor, num_points: int | Tensor) -> tuple[Tensor, Tensor]:
        # without control flow: token 0 gets +1000 per point beyond 2.5, so it wins from 3 points on
        bias = torch.zeros_like(iou)
        bias[:, 0] = 1000.0
        best = (iou + (num_points - 2.5) * bias).argmax(dim=1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        return masks[rows, best][:, None], iou[rows, best][:, None]

    def _to_original(self, masks: Tensor, orig_im_size: Tensor) -> Tensor:
        s = self.img_size
        masks = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        resized = torch.floor(size * (s / size.max()) + 0.5).to(torch.int64)  # resized_shape, round half up
        masks = masks[..., : resized[0], : resized[1]]
        orig = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(orig[0], orig[1]), mode="bilinear", align_corners=False)

    def forward(self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor, mask_input: Tensor,
                has_mask_input: Tensor, orig_im_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pe = self.prompt_encoder
        sparse = pe.embed_points(point_coords, point_labels, pad=False)
        h, w = pe.image_embedding_size
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
        dense = has_mask_input * pe.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        low, iou = self.mask_decoder.predict_masks(image_embeddings, pe.get_dense_pe(), sparse, dense)
        if self.return_single_mask:
            low, iou = self._select(low, iou, point_coords.shape[1])
        return self._to_original(low, orig_im_size), iou, low


def encoder_inputs(model: Sam, seed: int = 0) -> dict[str, Tensor]:
    """A random normalised image ``(1, 3, S, S)``."""
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(1, 3, model.img_size, model.img_size, generator=g)}


def decoder_inputs(model: Sam, num_points: int = 3, has_mask: bool = True, orig_hw: tuple[int, int] = (600, 900),
                   seed: int = 0) -> dict[str, Tensor]:
    """Random decoder inputs with ``num_points`` points (labels cycling 1, 0, 2, 3, -1)."""
    g = torch.Generator().manual_seed(seed)
    pe = model.prompt_encoder
    labels = torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0][i % 5] for i in range(num_points)])[None]
    return {
        "image_embeddings": torch.randn(1, pe.embed_dim, *pe.image_embedding_size, generator=g),
        "point_coords": torch.rand(1, num_points, 2, generator=g) * model.img_size * 0.6,
        "point_labels": labels,
        "mask_input": torch.randn(1, 1, *pe.mask_input_size, generator=g),
        "has_mask_input": torch.tensor([1.0 if has_mask else 0.0]),
        "orig_im_size": torch.tensor([float(orig_hw[0]), float(orig_hw[1])]),
    }


def _export(module: nn.Module, inputs: dict[str, Tensor], names: tuple[list[str], list[str]], path: Path,
            dynamic_axes: dict | None, opset: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values are expected here
        # the TorchScript exporter: the dynamo one cannot slice by a size computed from an input (orig_im_size)
        torch.onnx.export(module.eval(), tuple(inputs.values()), str(path), input_names=names[0],
                          output_names=names[1], dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    return path


def export_encoder(model: Sam, path: str | Path, opset: int = OPSET) -> Path:
    """Write the image encoder to ``path`` (EdgeSAM's encoder is exported ``fuse()``d if it was fused)."""
    return _export(OnnxEncoder(model), encoder_inputs(model), ENCODER_IO, path, None, opset)


def export_decoder(model: Sam, path: str | Path, return_single_mask: bool = False, opset: int = OPSET) -> Path:
    """Write prompt encoder + mask decoder to ``path``, dynamic in the number of points."""
    axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    return _export(OnnxDecoder(model, return_single_mask), decoder_inputs(model), DECODER_IO, path, axes, opset)


def run_onnx(path: str | Path, inputs: dict[str, Tensor]) -> list[np.ndarray]:
    """The outputs of an exported graph in onnxruntime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in inputs.items()})


def check_export(model: Sam, encoder_path: str | Path, decoder_path: str | Path,
                 return_single_mask: bool = False) -> dict[str, float]:
    """Largest absolute differences between onnxruntime and PyTorch: the encoder on a random image, the decoder
    for 1, 3 and 6 points, with and without a mask input, at three original sizes (``masks`` = logits there)."""
    diffs = {}
    inputs = encoder_inputs(model)
    with torch.no_grad():
        ref = OnnxEncoder(model)(**inputs)
    diffs["image_embeddings"] = float(np.abs(run_onnx(encoder_path, inputs)[0] - ref.numpy()).max())
    decoder = OnnxDecoder(model, return_single_mask).eval()
    # sizes other than the traced (600, 900): the original size is an input, not a constant of the graph
    for n, has_mask, orig in ((1, False, (120, 176)), (3, True, (333, 250)), (6, False, (64, 64))):
        inputs = decoder_inputs(model, n, has_mask, orig, seed=n)
        with torch.no_grad():
            refs = decoder(**inputs)
        for name, got, want in zip(DECODER_IO[1], run_onnx(decoder_path, inputs), refs):
            if got.shape != tuple(want.shape):
                raise AssertionError(f"{decoder_path}: {name} is {got.shape}, PyTorch gives {tuple(want.shape)}")
            diffs[name] = max(diffs.get(name, 0.0), float(np.abs(got - want.numpy()).max()))
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgesam.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--model", choices=MODEL_NAMES, help="architecture (default: recognised from the keys)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--single-mask", action="store_true", help="the decoder returns one mask (official rule)")
    p.add_argument("--no-fuse", action="store_true", help="EdgeSAM: keep BatchNorm and RepVGG branches unfolded")
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch and print the differences")
    args = p.parse_args(argv)
    try:
        model = build_sam(args.model, args.checkpoint)
    except (CheckpointError, ValueError) as err:
        print(f"error: edgesam.export: {err}", file=sys.stderr)
        return 2
    if hasattr(model.image_encoder, "fuse") and not args.no_fuse:
        model.image_encoder.fuse()
    name = args.model or Path(args.checkpoint).stem
    out = Path(args.out)
    enc = export_encoder(model, out / f"{name}_encoder.onnx", args.opset)
    dec = export_decoder(model, out / f"{name}_decoder.onnx", args.single_mask, args.opset)
    print(f"{enc}\n{dec}")
    if args.check:
        for key, value in check_export(model, enc, dec, args.single_mask).items():
            print(f"max |onnxruntime - torch| {key}: {value:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
