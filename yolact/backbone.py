"""Backbones: ResNet-18/34/50/101 (torchvision layout, optional deformable ``conv2``) and DarkNet-53.

Both return the feature maps named by ``out_indices`` (0 = stride 4 ... 3 = stride 32 for ResNet; DarkNet has five
stages, 0 = stride 2 ... 4 = stride 32). YOLACT uses C3-C5: ``out_indices=(1, 2, 3)`` for ResNet and ``(2, 3, 4)``
for DarkNet-53.

Expected input (the official preprocessing, see ``yolact.model``): RGB; ResNet ``(x - mean) / std`` with
mean ``(123.68, 116.78, 103.94)`` and std ``(58.40, 57.12, 57.38)`` on 0-255 values; DarkNet ``x / 255``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .dcn import ModulatedDeformConv2d
from .keymaps import map_darknet_key

RESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# The ImageNet initialisation of each backbone: the files the official YOLACT trains from (its README's backbone
# links; the ResNet-50 one is torchvision's legacy file), and torchvision's for ResNet-18/34. Any torchvision-layout
# ImageNet ResNet loads (``fc`` is ignored), e.g. torchvision's current resnet101-63fe2227.pth.
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth (torchvision's ImageNet ResNet-18)",
    "resnet34": "resnet34-b627a593.pth (torchvision's ImageNet ResNet-34)",
    "resnet50": "resnet50-19c8e357.pth (torchvision's ImageNet ResNet-50, as the official YOLACT uses)",
    "resnet101": "resnet101_reducedfc.pth (the official YOLACT's ImageNet ResNet-101; torchvision's "
                 "resnet101-63fe2227.pth loads too)",
    "darknet53": "darknet53.pth (the official YOLACT's ImageNet DarkNet-53)",
}
# ``backbone_checkpoint`` values that are not files: the paper rows' placeholder, and training from scratch on purpose
BACKBONE_REQUIRED = "required"
BACKBONE_SCRATCH = "scratch"


def missing_backbone_message(name: str) -> str:
    """What to do when a model that needs an ImageNet backbone (``backbone_checkpoint: required``) is trained."""
    what = IMAGENET_FILES.get(name, f"an ImageNet {name}")
    return (f"model.backbone_checkpoint is required to train this model: the paper starts from an ImageNet "
            f"backbone. Get {what} and set model.backbone_checkpoint=weights/{what.split(' ')[0]}; to train from a "
            f"random backbone on purpose set model.backbone_checkpoint={BACKBONE_SCRATCH} model.freeze_bn=false")


def dcn_blocks(num_blocks: int, dcn_layers: int, dcn_interval: int) -> list[bool]:
    """Which blocks of a stage get a deformable ``conv2`` (the rule of the official YOLACT++ backbone).

    The last ``dcn_layers`` blocks of the stage are candidates; among them block 0 always qualifies and block
    ``i > 0`` when ``i % dcn_interval == 0``. R101 with ``dcn_layers=(0, 4, 23, 3)``, interval 3 gives
    C3 {0, 3}, C4 {0, 3, ..., 21}, C5 {0}; R50 with ``(0, 4, 6, 3)``, interval 1, every C3-C5 block.
    """
    flags = [dcn_layers >= num_blocks]
    flags += [(i + dcn_layers) >= num_blocks and i % dcn_interval == 0 for i in range(1, num_blocks)]
    return flags


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision parameter names.

    ``(B, inplanes, H, W) -> (B, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 use_dcn: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if use_dcn:
            self.conv2 = ModulatedDeformConv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    """ResNet-18/34 basic block (two 3x3 convs, stride on the first), torchvision parameter names.

    Not in the paper (which uses ResNet-50/101 and DarkNet-53); used for the CPU-sized ``yolact/shapes`` run.
    ``(B, inplanes, H, W) -> (B, planes, H / stride, W / stride)``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 use_dcn: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if use_dcn:
            self.conv2 = ModulatedDeformConv2d(planes, planes, 3, stride=1, padding=1, bias=True)
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _freeze_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class ResNetBackbone(nn.Module):
    """ResNet with torchvision parameter names (``conv1``, ``bn1``, ``layer1``-``layer4``), no ``fc``.

    Args:
        depth: 18, 34 (basic blocks) or 50, 101 (bottlenecks).
        out_indices: stages returned (0 = ``layer1``, stride 4 ... 3 = ``layer4``, stride 32).
        dcn_layers: per stage, how many trailing blocks may use a deformable ``conv2`` (see :func:`dcn_blocks`).
        dcn_interval: of those, every ``dcn_interval``-th block does.
        freeze_bn: keep BatchNorm in eval mode with frozen affine parameters (for small batches).

    Shapes:
        ``(B, 3, H, W)`` -> list of ``(B, e * 64 * 2**i, H / 2**(i+2), W / 2**(i+2))`` for ``i`` in ``out_indices``
        (``e = 4`` for bottlenecks, 1 for basic blocks).
    """

    def __init__(self, depth: int = 101, out_indices: Sequence[int] = (1, 2, 3),
                 dcn_layers: Sequence[int] = (0, 0, 0, 0), dcn_interval: int = 1, freeze_bn: bool = False) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNetBackbone: depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        blocks = RESNET_DEPTHS[depth]
        block = BasicBlock if depth < 50 else Bottleneck
        self.depth, self.out_indices, self.freeze_bn = depth, tuple(out_indices), freeze_bn
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        self.channels: list[int] = []
        for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            out = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            flags = dcn_blocks(n, dcn_layers[i], dcn_interval)
            layer = [block(inplanes, planes, stride, downsample, flags[0])]
            inplanes = out
            layer += [block(inplanes, planes, use_dcn=flags[j]) for j in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.channels.append(inplanes)
        self.out_channels = [self.channels[i] for i in self.out_indices]
        if freeze_bn:
            _freeze_bn(self)

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        if self.freeze_bn:
            _freeze_bn(self)
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

    def load_imagenet(self, path: str) -> list[str]:
        """Load a torchvision-layout ImageNet checkpoint (``resnet50-19c8e357.pth``, ``resnet101_reducedfc.pth``,
        ``resnet18-f37072fd.pth``).

        ``fc.*`` is ignored; deformable offset branches and DCN biases are new and keep their init. Any other
        missing key is an error. Returns the list of keys that were not in the file.
        """
        state = _read_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        return _load_checked(self, state, path, f"torchvision ResNet-{self.depth}",
                             lambda k: ".offset_mask." in k or k.endswith("conv2.bias"))


class ConvBNLeaky(nn.Module):
    """``conv (no bias) -> BN -> LeakyReLU(0.1)``, the DarkNet unit. ``(B, Cin, H, W) -> (B, Cout, H/s, W/s)``."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DarkNetBlock(nn.Module):
    """Residual block: 1x1 to ``channels``, 3x3 back to ``2 * channels``, plus the input (no activation after)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNLeaky(2 * channels, channels, 1)
        self.conv2 = ConvBNLeaky(channels, 2 * channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """DarkNet-53 (YOLOv3): a 3x3 stem to 32 channels, then five stages of a stride-2 3x3 conv followed by
    ``(1, 2, 8, 8, 4)`` residual blocks; stage outputs have 64, 128, 256, 512, 1024 channels (strides 2-32).

    Args:
        blocks: residual blocks per stage.
        out_indices: stages returned (YOLACT: ``(2, 3, 4)``, strides 8/16/32).
        freeze_bn: as :class:`ResNetBackbone`.
    """

    def __init__(self, blocks: Sequence[int] = (1, 2, 8, 8, 4), out_indices: Sequence[int] = (2, 3, 4),
                 freeze_bn: bool = False) -> None:
        super().__init__()
        self.out_indices, self.freeze_bn = tuple(out_indices), freeze_bn
        self.stem = ConvBNLeaky(3, 32, 3)
        self.stages = nn.ModuleList()
        self.channels = []
        cin = 32
        for n, c in zip(blocks, (32, 64, 128, 256, 512)):
            down = ConvBNLeaky(cin, 2 * c, 3, stride=2)
            self.stages.append(nn.Sequential(down, *[DarkNetBlock(c) for _ in range(n)]))
            cin = 2 * c
            self.channels.append(cin)
        self.out_channels = [self.channels[i] for i in self.out_indices]
        if freeze_bn:
            _freeze_bn(self)

    def train(self, mode: bool = True) -> DarkNetBackbone:
        super().train(mode)
        if self.freeze_bn:
            _freeze_bn(self)
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

    def load_imagenet(self, path: str) -> list[str]:
        """Load the official ``darknet53.pth`` (its layout: ``_preconv.*``, ``layers.i.*``) or one of ours."""
        state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(("fc.", "classifier."))}
        if any(k.startswith("_preconv") for k in state):
            state = {map_darknet_key(k): v for k, v in state.items()}
        return _load_checked(self, state, path, "DarkNet-53", lambda k: False)


def _load_checked(module: nn.Module, state: dict[str, Tensor], path: str, what: str, may_miss) -> list[str]:
    """Load ``state`` into ``module`` non-strictly but refuse anything except keys ``may_miss`` accepts (plus
    ``num_batches_tracked``) being absent; returns the absent keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    bad = [k for k in missing if not (may_miss(k) or k.endswith("num_batches_tracked"))]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and state[k].shape != own[k].shape]
    if bad or unexpected or shapes:
        raise KeyError(f"{path}: not a {what} checkpoint: missing {bad[:4]}, unexpected {unexpected[:4]}, "
                       f"wrong shapes {shapes[:4]}")
    module.load_state_dict(state, strict=False)
    return missing


def _read_state_dict(path: str) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone checkpoint not found: {path} (model.backbone_checkpoint)")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def build_backbone(name: str, dcn_layers: Sequence[int] = (0, 0, 0, 0), dcn_interval: int = 1,
                   freeze_bn: bool = False) -> nn.Module:
    """``'resnet18' | 'resnet34' | 'resnet50' | 'resnet101' | 'darknet53'`` -> backbone returning C3, C4, C5."""
    if name in ("resnet18", "resnet34", "resnet50", "resnet101"):
        return ResNetBackbone(int(name[6:]), (1, 2, 3), dcn_layers, dcn_interval, freeze_bn)
    if name == "darknet53":
        if any(dcn_layers):
            raise ValueError("build_backbone: deformable convolutions are only supported in ResNet backbones")
        return DarkNetBackbone(out_indices=(2, 3, 4), freeze_bn=freeze_bn)
    raise ValueError(f"build_backbone: unknown backbone {name!r}; expected resnet18, resnet34, resnet50, resnet101 "
                     "or darknet53")
