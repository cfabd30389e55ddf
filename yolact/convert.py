"""Official YOLACT / YOLACT++ checkpoints (``dbolya/yolact`` ``*_54_800000.pth``) -> our :class:`Yolact`.

Key map: :mod:`yolact.keymaps`.

Command line: ``python -m yolact.convert yolact_base_54_800000.pth out.pth [--model yolact_base]`` writes
``{"state_dict": ..., "meta": {"model": name, "model_kwargs": ..., "source": file}}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from forge.inference import safe_load

from .configs import OFFICIAL_MODELS, official_kwargs
from .keymaps import (  # noqa: F401  (re-exported: the converter's public API)
    convert_state_dict,
    detect_model,
    is_official,
    map_darknet_key,
    map_official_key,
)
from .model import Yolact


def read_checkpoint(path: str) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, meta)`` of an official ``.pth``, a file written by this converter or an mmengine checkpoint."""
    obj = safe_load(path)  # also our mmengine checkpoints (message-hub entries beside the weights)
    meta: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        meta = obj.get("meta") or {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise TypeError(f"{path}: not a state dict of tensors")
    obj = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}
    return obj, meta


def load_model(path: str, model: str | None = None, **overrides):
    """Build the right :class:`Yolact` for a checkpoint and load it strictly.

    Args:
        path: official release, converted file or one of our training checkpoints.
        model: official model name (``yolact_base`` ...); recognised from the checkpoint when None.
        overrides: extra constructor arguments (e.g. ``nms='standard'``, ``num_classes=20``).

    Returns:
        ``(model, name)`` with the model in eval mode.
    """
    state, meta = read_checkpoint(path)
    name = model or meta.get("model") or detect_model(state, path)
    kwargs = dict(meta.get("model_kwargs") or official_kwargs(name)) if not model else official_kwargs(name)
    if is_official(state):
        state = convert_state_dict(state, darknet=kwargs["backbone"] == "darknet53", source=path)
    head_cls = state.get("head.cls.weight")
    if head_cls is not None and "num_classes" not in overrides:
        a = state["head.box.weight"].shape[0] // 4
        kwargs["num_classes"] = head_cls.shape[0] // a - 1
    net = build_for_state(state, {**kwargs, **overrides}, path)
    return net.eval(), name


def build_official(name: str, **overrides: Any) -> Yolact:
    """The network of an official model (untrained; load weights with :func:`load_model`)."""
    return Yolact(**{**official_kwargs(name), **overrides})


def build_for_state(state: Mapping[str, Tensor], kwargs: dict, source: str = "checkpoint"):
    """Construct a :class:`Yolact` on the meta device (no random init) and adopt ``state`` (our key names)."""

    with torch.device("meta"):
        net = Yolact(**kwargs)
    load_strict(net, state, source, assign=True)
    return net


def load_strict(net: torch.nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint",
                assign: bool = False) -> None:
    """``load_state_dict`` that fills absent ``num_batches_tracked`` and refuses any other mismatch.

    ``assign=True`` adopts the given tensors (for a model built on the meta device)."""
    own = net.state_dict()
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros(v.shape, dtype=v.dtype)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise KeyError(f"{source}: does not fit the model: {len(missing)} missing (e.g. {missing[:4]}), "
                       f"{len(unexpected)} unexpected (e.g. {unexpected[:4]}), shape mismatches {shapes[:4]}")
    net.load_state_dict(state, strict=True, assign=assign)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yolact.convert", description=__doc__.split("\n")[0])
    parser.add_argument("src", help="official checkpoint, e.g. yolact_base_54_800000.pth")
    parser.add_argument("dst", help="output file")
    parser.add_argument("--model", choices=sorted(OFFICIAL_MODELS), help="architecture (default: recognised)")
    args = parser.parse_args(argv)
    net, name = load_model(args.src, args.model)
    torch.save({"state_dict": net.state_dict(),
                "meta": {"model": name, "model_kwargs": official_kwargs(name), "source": os.path.basename(args.src)}},
               args.dst)
    print(f"{args.src} -> {args.dst} ({name}, {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
