"""Key names of the official YOLACT / YOLACT++ checkpoints (``dbolya/yolact``) -> ours: pure functions on
names and state dicts, imported by the modules that load official files (no model code here).

Key map (official -> ours):

==============================================  ================================================
``backbone.layers.{i}.*`` (ResNet)              ``backbone.layer{i+1}.*`` (torchvision names)
``...conv2.conv_offset_mask.*`` (DCNv2)         ``...conv2.offset_mask.*``
``backbone._preconv.{0,1}`` (DarkNet)           ``backbone.stem.{conv,bn}``
``backbone.layers.{i}.0.{0,1}``                 ``backbone.stages.{i}.0.{conv,bn}``
``backbone.layers.{i}.{j}.conv{1,2}.{0,1}``     ``backbone.stages.{i}.{j}.conv{1,2}.{conv,bn}``
``fpn.lat_layers.{j}`` (stored C5 first)        ``fpn.lateral.{2-j}`` (C3 first)
``fpn.pred_layers.{j}`` (P5 first)              ``fpn.output.{2-j}`` (P3 first)
``fpn.downsample_layers.{0,1}``                 ``fpn.extra.{0,1}`` (surplus indices dropped)
``proto_net.{0,2,4,8,10}``                      ``protonet.convs.{0,1,2}``, ``protonet.up_conv``, ``protonet.proj``
``prediction_layers.0.upfeature.0``             ``head.shared``
``prediction_layers.0.{bbox,conf,mask}_layer``  ``head.{box,cls,coef}``
``semantic_seg_conv``                           ``semantic_head.conv``
``maskiou_net.maskiou_net.{0,2,4,6,8,10}``      ``maskiou_net.convs.{0..4}``, ``maskiou_net.cls``
==============================================  ================================================

Legacy ``backbone.layer*`` keys (pre-``layers`` naming) are dropped as the original loader does; missing
``num_batches_tracked`` buffers are filled with 0. Anything else unknown, or any key of the model left unset, is an
error: no silent partial loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from torch import Tensor

_PROTO = {"0": "convs.0", "2": "convs.1", "4": "convs.2", "8": "up_conv", "10": "proj"}
_HEAD = {"upfeature.0": "shared", "bbox_layer": "box", "conf_layer": "cls", "mask_layer": "coef"}
_MASKIOU = {"0": "convs.0", "2": "convs.1", "4": "convs.2", "6": "convs.3", "8": "convs.4", "10": "cls"}


def map_darknet_key(key: str) -> str:
    """Official DarkNet-53 backbone key (without the ``backbone.`` prefix) -> ours."""
    m = re.fullmatch(r"_preconv\.([01])\.(.+)", key)
    if m:
        return f"stem.{'conv' if m[1] == '0' else 'bn'}.{m[2]}"
    m = re.fullmatch(r"layers\.(\d+)\.0\.([01])\.(.+)", key)
    if m:
        return f"stages.{m[1]}.0.{'conv' if m[2] == '0' else 'bn'}.{m[3]}"
    m = re.fullmatch(r"layers\.(\d+)\.(\d+)\.(conv[12])\.([01])\.(.+)", key)
    if m:
        return f"stages.{m[1]}.{m[2]}.{m[3]}.{'conv' if m[4] == '0' else 'bn'}.{m[5]}"
    raise KeyError(key)


def map_official_key(key: str, darknet: bool = False) -> str | None:
    """One official key -> our key, or None for keys the original loader also drops. Raises KeyError if unknown."""
    if key.startswith("backbone."):
        rest = key[len("backbone."):]
        if darknet:
            return "backbone." + map_darknet_key(rest)
        if rest.startswith("layer") and not rest.startswith("layers."):
            return None  # legacy duplicate naming, deleted by the original load_weights
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
        if m:
            rest = f"layer{int(m[1]) + 1}.{m[2]}".replace(".conv_offset_mask.", ".offset_mask.")
        elif not re.fullmatch(r"(conv1|bn1)\..+", rest):
            raise KeyError(key)
        return "backbone." + rest
    m = re.fullmatch(r"fpn\.(lat_layers|pred_layers|downsample_layers)\.(\d+)\.(weight|bias)", key)
    if m:
        j = int(m[2])
        if m[1] == "downsample_layers":
            return None if j >= 2 else f"fpn.extra.{j}.{m[3]}"
        return f"fpn.{'lateral' if m[1] == 'lat_layers' else 'output'}.{2 - j}.{m[3]}"
    m = re.fullmatch(r"proto_net\.(\d+)\.(weight|bias)", key)
    if m and m[1] in _PROTO:
        return f"protonet.{_PROTO[m[1]]}.{m[2]}"
    m = re.fullmatch(r"prediction_layers\.0\.(upfeature\.0|bbox_layer|conf_layer|mask_layer)\.(weight|bias)", key)
    if m:
        return f"head.{_HEAD[m[1]]}.{m[2]}"
    m = re.fullmatch(r"semantic_seg_conv\.(weight|bias)", key)
    if m:
        return f"semantic_head.conv.{m[1]}"
    m = re.fullmatch(r"maskiou_net\.maskiou_net\.(\d+)\.(weight|bias)", key)
    if m and m[1] in _MASKIOU:
        return f"maskiou_net.{_MASKIOU[m[1]]}.{m[2]}"
    raise KeyError(key)


def is_official(state: Mapping[str, Tensor]) -> bool:
    """Whether a state dict uses the original repository's names."""
    return any(k.startswith(("prediction_layers.", "proto_net.", "fpn.lat_layers.")) for k in state)


def detect_model(state: Mapping[str, Tensor], filename: str = "") -> str:
    """Name the official architecture of a state dict (ours or official) from its keys and shapes.

    ``yolact_im700`` has the same parameters as ``yolact_base`` (only input size and anchor scales differ); it is
    recognised by ``im700`` in the file name, otherwise pass ``--model``.
    """
    official = is_official(state)
    darknet = any(k.startswith(("backbone._preconv.", "backbone.stem.")) for k in state)
    plus = any("offset_mask" in k or k.startswith("maskiou_net.") for k in state)
    if darknet:
        return "yolact_darknet53"
    stage3 = "backbone.layers.2." if official else "backbone.layer3."
    blocks = {int(k[len(stage3):].split(".")[0]) for k in state if k.startswith(stage3)}
    if not blocks:
        raise ValueError(f"{filename or 'checkpoint'}: cannot recognise a YOLACT backbone from its keys")
    if not any(k.startswith(stage3) and ".conv3." in k for k in state):
        raise ValueError(f"{filename or 'checkpoint'}: basic-block ResNet, not one of the released YOLACT models; "
                         "rebuild it from its run's config.yaml (forge-infer yolact --config)")
    depth = {6: 50, 23: 101}.get(max(blocks) + 1)
    if depth is None:
        raise ValueError(f"{filename or 'checkpoint'}: ResNet stage 3 has {max(blocks) + 1} blocks (6 or 23 expected)")
    if plus:
        return "yolact_plus_resnet50" if depth == 50 else "yolact_plus_base"
    if depth == 50:
        return "yolact_resnet50"
    return "yolact_im700" if "im700" in os.path.basename(filename) else "yolact_base"


def convert_state_dict(state: Mapping[str, Tensor], darknet: bool, source: str = "") -> dict[str, Tensor]:
    """Rename every key of an official state dict (see the table above); ``source`` (the file) names it in errors."""
    out: dict[str, Tensor] = {}
    unknown = []
    for k, v in state.items():
        try:
            new = map_official_key(k, darknet)
        except KeyError:
            unknown.append(k)
            continue
        if new is not None:
            out[new] = v
    if unknown:
        raise KeyError(
            f"official checkpoint{f' {source}' if source else ''} has {len(unknown)} keys that are not YOLACT's, "
            f"e.g. {unknown[:5]}"
        )
    return out
