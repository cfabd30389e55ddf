"""ResNet-FPN backbone of the NOH-NMS detector, from torchvision's ResNet and ``BackboneWithFPN``.

As the public config (``build_resnet_fpn_backbone_better``): C2-C5 into an FPN with BatchNorm (``FPN.NORM BN``)
and P6 = 2x2 average pooling of P5 (its ``LastLevelAvgPool``; torchvision subsamples P5 with a 1x1 max pool);
detectron2's ``FrozenBN`` ResNet with the stem and ``res2`` frozen (``FREEZE_AT 2``). ImageNet weights come from a
local torchvision file (``resnet50-0676ba61.pth`` / ``resnet50-19c8e357.pth``...); the public code starts from
MSRA's caffe ``R-50.pkl`` (BGR, mean subtraction only), which torchvision's layout cannot hold.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

__all__ = ["BACKBONE_REQUIRED", "BACKBONE_SCRATCH", "IMAGENET_FILES", "LastLevelAvgPool", "build_resnet_fpn",
           "load_imagenet", "missing_backbone_message"]

BACKBONE_REQUIRED = "required"
BACKBONE_SCRATCH = "scratch"
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-cd907fc2.pth",
}
_NORMS = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}


def missing_backbone_message(name: str) -> str:
    """What to do when a paper row (``backbone_checkpoint: required``) is trained without the ImageNet file."""
    what = IMAGENET_FILES.get(name, f"{name}.pth")
    return (f"model.backbone_checkpoint is required to train this model: the paper starts from an ImageNet "
            f"backbone. Get torchvision's {what} and set model.backbone_checkpoint=weights/{what}; to train from a "
            f"random backbone on purpose set model.backbone_checkpoint={BACKBONE_SCRATCH} model.backbone_norm=bn")


class LastLevelAvgPool(ExtraFPNBlock):
    """P6 = ``avg_pool2d(P5, 2, 2)`` (the public code's extra level)."""

    def forward(self, x: list[Tensor], y: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        names.append("pool")
        x.append(F.avg_pool2d(x[-1], kernel_size=2, stride=2, padding=0, ceil_mode=True))
        return x, names


def build_resnet_fpn(name: str = "resnet50", norm: str = "frozen_bn", trainable_layers: int = 3,
                     fpn_norm: str | None = "bn", out_channels: int = 256) -> BackboneWithFPN:
    """``(B, 3, H, W)`` -> ``OrderedDict`` ``'0'..'3'`` (P2-P5, strides 4-32) and ``'pool'`` (P6, stride 64).

    Args:
        name: ``resnet18 | resnet34 | resnet50 | resnet101``.
        norm: the ResNet's norm, ``frozen_bn`` or ``bn``.
        trainable_layers: 0-5 trained stages counted from ``layer4`` (3 = ``layer2``-``layer4``); ``bn``
            backbones trained from scratch should use 5.
        fpn_norm: ``bn`` or None.
    """
    if name not in IMAGENET_FILES:
        raise ValueError(f"model.backbone must be one of {sorted(IMAGENET_FILES)}, got {name!r}")
    if norm not in _NORMS:
        raise ValueError(f"model.backbone_norm must be one of {sorted(_NORMS)}, got {norm!r}")
    if fpn_norm not in (None, "bn"):
        raise ValueError(f"model.fpn_norm must be 'bn' or null, got {fpn_norm!r}")
    if not 0 <= int(trainable_layers) <= 5:
        raise ValueError(f"model.trainable_layers must be in 0..5, got {trainable_layers!r}")
    net = getattr(resnet, name)(weights=None, norm_layer=_NORMS[norm])
    stages = ["layer4", "layer3", "layer2", "layer1", "conv1"][: int(trainable_layers)]
    if int(trainable_layers) == 5:
        stages.append("bn1")
    for pname, p in net.named_parameters():
        if not any(pname.startswith(s) for s in stages):
            p.requires_grad_(False)
    c = 64 if name in ("resnet18", "resnet34") else 256
    return BackboneWithFPN(net, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                           [c, 2 * c, 4 * c, 8 * c], out_channels, extra_blocks=LastLevelAvgPool(),
                           norm_layer=nn.BatchNorm2d if fpn_norm == "bn" else None)


def load_imagenet(backbone: BackboneWithFPN, path: str) -> None:
    """Load a torchvision ImageNet ResNet state dict (``fc.*`` dropped) into ``backbone.body``.

    Raises:
        FileNotFoundError: naming ``path`` and ``model.backbone_checkpoint``.
        KeyError: the file is not a ResNet of this depth (missing / unexpected keys or shapes named).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone checkpoint not found: {path} (model.backbone_checkpoint)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise KeyError(f"{path}: expected a state dict, got {type(state).__name__} (model.backbone_checkpoint)")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    own = backbone.body.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    shapes = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise KeyError(f"{path}: not a torchvision ResNet of this depth (model.backbone_checkpoint): missing "
                       f"{missing[:4]}, unexpected {unexpected[:4]}, wrong shapes {shapes[:4]}")
    backbone.body.load_state_dict(state, strict=False)
