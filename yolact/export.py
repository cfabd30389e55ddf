"""ONNX export of the YOLACT network without post-processing.

Graph input: ``images (B, 3, H, W)`` float RGB **pixel values** (0-255) at the exported size, resized as the model
expects (:func:`yolact.preprocess.preprocess_image` for official releases, the run's ``pipeline.val`` for our
checkpoints; ``config.yaml`` beside the checkpoint or ``--config``). The model's own normalisation (its
``data_preprocessor``: mean, std, channel order) is the first op of the graph, so a consumer needs no constants.
Outputs: ``boxes
(B, A, 4)`` SSD deltas, ``scores (B, A, C + 1)`` softmax class scores (background first), ``coefs (B, A, k)``,
``prototypes (B, k, H/4, W/4)`` and ``anchors (A, 4)`` relative cxcywh (a constant for the exported size). Decoding,
NMS and mask assembly (:mod:`yolact.postprocess`) stay outside the graph, so Fast NMS / standard NMS can be chosen
at run time. The YOLACT++ mask re-scoring net is exported separately (``--maskiou``): ``masks (N, 1, h, w) -> iou
(N, C)``.

YOLACT++ backbones use ``torchvision.ops.deform_conv2d``. torch's exporter has no translation for it, so
:func:`register_deform_conv_symbolic` maps it to the standard ONNX ``DeformConv`` operator (opset 19); onnxruntime
(1.32 here) runs it on CPU and matches PyTorch (tests/yolact/test_infer_export.py).

    python -m yolact.export --checkpoint yolact_base_54_800000.pth --out yolact_base.onnx [--size 550] [--check]
    python -m yolact.export --checkpoint work_dirs/yolact/shapes/iter_1000.pth --out shapes.onnx --check
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configs import OFFICIAL_MODELS
from .infer import load_for_inference


class ExportWrapper(nn.Module):
    """The network as a plain ``forward(images) -> tuple`` (no data samples, no post-processing): pixel values in,
    normalised by the model's data preprocessor (one with a ``normalize``, as :class:`forge.models.ImagePreprocessor`)
    before the network."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        normalize = getattr(self.model.data_preprocessor, "normalize", None)
        out = self.model.forward_tensor(normalize(images) if normalize is not None else images)
        return (out["boxes"], F.softmax(out["cls_logits"], -1), out["coefs"], out["prototypes"], out["anchors"])


OUTPUT_NAMES = ["boxes", "scores", "coefs", "prototypes", "anchors"]
_REGISTERED = False


def _deform_conv_symbolic(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                          n_weight_groups, n_offset_groups, use_mask):
    from torch.onnx import symbolic_helper as sh

    def c(v, name):
        return sh._get_const(v, "i", name)

    if not c(use_mask, "use_mask"):
        raise NotImplementedError("ONNX export of deform_conv2d without a mask is not needed by YOLACT++")
    ph, pw = c(pad_h, "pad_h"), c(pad_w, "pad_w")
    return g.op("DeformConv", x, weight, offset, bias, mask,
                dilations_i=[c(dil_h, "dil_h"), c(dil_w, "dil_w")], group_i=c(n_weight_groups, "groups"),
                kernel_shape_i=sh._get_tensor_sizes(weight)[2:], offset_group_i=c(n_offset_groups, "offset_groups"),
                pads_i=[ph, pw, ph, pw], strides_i=[c(stride_h, "stride_h"), c(stride_w, "stride_w")])


def register_deform_conv_symbolic(opset: int = 19) -> None:
    """Export ``torchvision::deform_conv2d`` as ONNX ``DeformConv`` (inputs X, W, offset, B, mask; opset >= 19)."""
    global _REGISTERED
    if opset < 19:
        raise ValueError(f"DeformConv needs ONNX opset >= 19, got {opset}")
    if not _REGISTERED:
        torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv_symbolic, opset)
        _REGISTERED = True


def export_onnx(model: nn.Module, path: str, size: tuple[int, int] = (550, 550), batch: int = 1,
                opset: int = 19, dynamic_batch: bool = True) -> None:
    """Export ``model`` (a :class:`yolact.model.Yolact` in eval mode) to ``path`` for a fixed input size."""
    if any(type(m).__name__ == "ModulatedDeformConv2d" for m in model.modules()):
        register_deform_conv_symbolic(opset)
    wrapper = ExportWrapper(model.eval())
    device = next(model.parameters()).device
    x = torch.zeros((batch, 3, *size), device=device)
    dynamic_axes = {"images": {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES[:4]}} if dynamic_batch else None
    with warnings.catch_warnings():  # anchors and deform-conv arguments are constants of the traced graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(wrapper, (x,), path, input_names=["images"], output_names=OUTPUT_NAMES,
                          opset_version=opset, dynamic_axes=dynamic_axes, dynamo=False)


def check_onnx(model: nn.Module, path: str, images: Tensor, atol: float = 1e-4) -> dict[str, float]:
    """Run the ONNX file with onnxruntime and return the max abs difference to PyTorch per output."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(OUTPUT_NAMES, {"images": images.cpu().numpy()})
    with torch.no_grad():
        ref = ExportWrapper(model.eval())(images)
    diffs = {n: float(np.abs(g - r.cpu().numpy()).max()) for n, g, r in zip(OUTPUT_NAMES, got, ref)}
    bad = {n: d for n, d in diffs.items() if d > atol}
    if bad:
        raise AssertionError(f"{path}: onnxruntime differs from PyTorch beyond {atol}: {bad}")
    return diffs


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2 (no traceback), as ``forge-infer yolact`` on bad input."""
    print(f"error: python -m yolact.export: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _check_out(flag: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        _fail(f"{flag} {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        _fail(f"{flag} {path!r} is a folder; give the .onnx file to write")


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring). Bad input — a missing or unloadable checkpoint or config, an output in a
    folder that does not exist, a bad ``--size``, ``--maskiou`` for a model without the net — exits 2 with one line
    naming the file or the argument."""
    p = argparse.ArgumentParser(prog="python -m yolact.export", description="YOLACT -> ONNX (no post-processing)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", choices=sorted(OFFICIAL_MODELS), help="official architecture (default: recognised)")
    p.add_argument("--config", help="a training run's config.yaml (default: the one next to the checkpoint, if any)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="S or H W (default: the model's max_size)")
    p.add_argument("--opset", type=int, default=19)
    p.add_argument("--maskiou", help="also export the YOLACT++ re-scoring net to this file")
    p.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch on a random input")
    args = p.parse_args(argv)
    if args.size is not None and (len(args.size) not in (1, 2) or min(args.size) < 32):
        _fail(f"--size takes S or H W (each >= 32 px), got {' '.join(map(str, args.size))}")
    if not os.path.isfile(args.checkpoint):
        _fail(f"checkpoint {args.checkpoint!r} not found")
    for flag, path in (("--out", args.out), ("--maskiou", args.maskiou)):
        if path:
            _check_out(flag, path)
    try:
        net, name, _ = load_for_inference(args.checkpoint, args.model, args.config)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # absent, unreadable, does not fit
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        _fail(text if args.checkpoint in text or "--config" in text
              else f"cannot load checkpoint {args.checkpoint!r}: {text}")
    if args.maskiou and net.maskiou_net is None:
        _fail(f"--maskiou: {name} has no mask re-scoring net")
    size = tuple(args.size) * (2 // len(args.size)) if args.size else (net.max_size, net.max_size)
    try:
        export_onnx(net, args.out, size, opset=args.opset)
    except OSError as err:
        _fail(f"cannot write --out {args.out!r}: {err}")
    print(f"{name} -> {args.out} (input 1x3x{size[0]}x{size[1]})")
    if args.maskiou:
        h, w = size[0] // 4, size[1] // 4
        torch.onnx.export(net.maskiou_net, (torch.zeros(1, 1, h, w),), args.maskiou, input_names=["masks"],
                          output_names=["iou"], opset_version=args.opset, dynamic_axes={"masks": {0: "n"}},
                          dynamo=False)
        print(f"mask re-scoring net -> {args.maskiou}")
    if args.check:
        x = torch.randn((1, 3, *size), generator=torch.Generator().manual_seed(0))
        print({k: f"{v:.2e}" for k, v in check_onnx(net, args.out, x).items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
