"""MaskCLIP+ segmenters: a dilated torchvision ResNet (output stride 8) and a DeepLab head whose classifier is the
frozen CLIP text embedding (MaskCLIP Sec. 3.3; the official ``MaskClipPlusHead``).

* :class:`DilatedResNet` -- torchvision's ResNet with layers 3 and 4 dilated (2, 4) instead of strided (OS 8). The
  official code uses mmseg's ``ResNetV1c`` (deep 3-conv stem) with ImageNet weights from open-mmlab; torchvision's
  ResNet has the single 7x7 stem (the task allows it; name the difference).
* :class:`ASPPv2` -- DeepLabv2's ASPP: parallel 3x3 convolutions of dilation 6/12/18/24 (1x1 for dilation 1), each
  with BN + ReLU (mmcv ``ConvModule``), **summed** (``ASPPHeadV2.forward_module``).
* :class:`DeepLabV3PlusHead` -- mmseg's ``DepthwiseSeparableASPPHead``: image pooling branch + 1x1 + separable 3x3
  ASPP branches (dilations 1/12/24/36), concatenated, 3x3 bottleneck; decoder: layer-1 features through a 1x1 conv
  to 48 channels, concatenated with the upsampled ASPP output, two separable 3x3 convolutions.
* :class:`TextClassifier` -- ``logits = conv1x1(feat, text_embeddings)`` (no feature normalisation, no logit scale:
  ``norm_feat=False``), plus an optional learnable background embedding (``cls_bg``, L2-normalised) in front.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

__all__ = ["DilatedResNet", "ASPPv2", "DeepLabV3PlusHead", "TextClassifier"]


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def sep_conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (BN, ReLU) then pointwise 1x1 (BN, ReLU), as mmcv's ``DepthwiseSeparableConvModule``."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False), nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True), conv_bn_relu(cin, cout, 1))


class _ScaledResNet(torchvision.models.resnet.ResNet):
    """torchvision's ResNet with the stage widths (64, 128, 256, 512) multiplied by ``width_scale`` (the stem keeps
    64 channels): the small students of the CPU demo."""

    def __init__(self, layers: Sequence[int], width_scale: float) -> None:
        self.width_scale = float(width_scale)
        super().__init__(torchvision.models.resnet.Bottleneck, list(layers),
                         replace_stride_with_dilation=[False, True, True])

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, max(1, int(planes * self.width_scale)), blocks, stride, dilate)


class DilatedResNet(nn.Module):
    """torchvision ResNet, output stride 8. ``layers`` (Bottleneck counts) default to ResNet-101's (3, 4, 23, 3).

    ``forward(x (B, 3, H, W))`` -> ``(c1 (B, 256 s, H/4, W/4), c4 (B, 2048 s, H/8, W/8))``, ``s = width_scale``.
    ``weights``: a torchvision weights name (e.g. ``"IMAGENET1K_V2"``, needs the file in torch's cache) or None.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 23, 3), weights: str | None = None,
                 width_scale: float = 1.0) -> None:
        super().__init__()
        layers = tuple(int(v) for v in layers)
        if width_scale != 1.0:
            if weights is not None:
                raise ValueError("pretrained weights need width_scale=1")
            net = _ScaledResNet(layers, width_scale)
        elif layers == (3, 4, 23, 3):
            net = torchvision.models.resnet101(weights=weights, replace_stride_with_dilation=[False, True, True])
        elif layers == (3, 4, 6, 3):
            net = torchvision.models.resnet50(weights=weights, replace_stride_with_dilation=[False, True, True])
        else:
            if weights is not None:
                raise ValueError(f"no torchvision weights for ResNet layers {layers}")
            net = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, list(layers),
                                                   replace_stride_with_dilation=[False, True, True])
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = int(net.layer4[-1].conv3.out_channels)
        self.c1_channels = int(net.layer1[-1].conv3.out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c1 = self.layer1(self.stem(x))
        return c1, self.layer4(self.layer3(self.layer2(c1)))


class ASPPv2(nn.Module):
    """DeepLabv2 ASPP: ``sum_d conv_d(x)`` over ``dilations`` -> ``(B, channels, h, w)``."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            conv_bn_relu(in_channels, channels, 1 if d == 1 else 3, dilation=d) for d in dilations)

    def forward(self, c1: Tensor, c4: Tensor) -> Tensor:
        return torch.stack([b(c4) for b in self.branches]).sum(0)


class DeepLabV3PlusHead(nn.Module):
    """DeepLabv3+ decoder (mmseg ``DepthwiseSeparableASPPHead``) -> ``(B, channels, H/4, W/4)``."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int] = (1, 12, 24, 36),
                 c1_in_channels: int = 256, c1_channels: int = 48) -> None:
        super().__init__()
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, channels, 1))
        self.aspp = nn.ModuleList(
            conv_bn_relu(in_channels, channels, 1) if d == 1 else sep_conv_bn_relu(in_channels, channels, d)
            for d in dilations)
        self.bottleneck = conv_bn_relu((len(dilations) + 1) * channels, channels, 3)
        self.c1_bottleneck = conv_bn_relu(c1_in_channels, c1_channels, 1)
        self.sep_bottleneck = nn.Sequential(sep_conv_bn_relu(channels + c1_channels, channels),
                                            sep_conv_bn_relu(channels, channels))

    def forward(self, c1: Tensor, c4: Tensor) -> Tensor:
        pool = F.interpolate(self.image_pool(c4), size=c4.shape[2:], mode="bilinear", align_corners=False)
        x = self.bottleneck(torch.cat([pool, *[b(c4) for b in self.aspp]], dim=1))
        x = F.interpolate(x, size=c1.shape[2:], mode="bilinear", align_corners=False)
        return self.sep_bottleneck(torch.cat([self.c1_bottleneck(c1), x], dim=1))


class TextClassifier(nn.Module):
    """Frozen ``(C, D)`` text embeddings as a 1x1 convolution; ``cls_bg`` adds a learnable background class 0."""

    def __init__(self, text_embeddings: Tensor, cls_bg: bool = False) -> None:
        super().__init__()
        if text_embeddings.ndim != 2:
            raise ValueError(f"text embeddings must be (C, D), got {tuple(text_embeddings.shape)}")
        self.register_buffer("text_embeddings", text_embeddings.detach().float().clone())
        self.bg_embedding = nn.Parameter(torch.randn(1, text_embeddings.shape[1])) if cls_bg else None

    def embeddings(self) -> Tensor:
        """``(C (+1), D)``: the classifier rows, background first when ``cls_bg``."""
        if self.bg_embedding is None:
            return self.text_embeddings
        return torch.cat([F.normalize(self.bg_embedding, dim=-1), self.text_embeddings], dim=0)

    def forward(self, feat: Tensor) -> Tensor:
        """``(B, D, h, w)`` -> ``(B, C (+1), h, w)``."""
        return torch.einsum("bdhw,cd->bchw", feat, self.embeddings().to(feat.dtype))
