"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) on top of ``torchvision.ops.deform_conv2d``.

YOLACT++ (Sec. 4.1 of the TPAMI paper) replaces some 3x3 convolutions of the ResNet backbone by this layer. The
offsets and modulation masks come from a regular convolution ``offset_mask`` with ``3 * k * k`` outputs: the first
``2 * k * k`` channels are the offsets (``(dy, dx)`` pairs per kernel tap, tap-major, the layout of
``deform_conv2d``), the last ``k * k`` are passed through a sigmoid to give the masks. No compiled extension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """``y = sum_k w_k * x(p + p_k + dp_k) * m_k + b`` with bilinear sampling (zero outside the map).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: stride.
        padding: zero padding.
        dilation: dilation.
        bias: whether the deformable convolution has a bias (the official YOLACT++ layer has one).

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H', W')`` as ``nn.Conv2d`` with the same arguments.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.offset_mask = nn.Conv2d(
            in_channels, 3 * kernel_size * kernel_size, kernel_size, stride=stride, padding=padding,
            dilation=dilation, bias=True,
        )
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        # zero offsets and masks of 0.5 at the start: the layer begins as a (halved) regular convolution
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def offsets_and_masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 2*k*k, H', W')`` offsets and ``(B, k*k, H', W')`` sigmoid masks for input ``x``."""
        om = self.offset_mask(x)
        n = 2 * self.kernel_size * self.kernel_size
        return om[:, :n], om[:, n:].sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        offset, mask = self.offsets_and_masks(x)
        args = (x, offset, self.weight, self.bias, mask)
        if torch.is_autocast_enabled(x.device.type) or x.dtype in (torch.float16, torch.bfloat16):
            # torchvision's CPU kernel has no bfloat16 and CPU autocast has no rule for the op; sampling positions
            # are also better kept in float32 (as torchvision's CUDA autocast rule does): compute in float32
            with torch.autocast(x.device.type, enabled=False):
                return self._deform(*(None if t is None else t.float() for t in args)).to(x.dtype)
        return self._deform(*args)

    def _deform(self, x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, mask: Tensor) -> Tensor:
        return deform_conv2d(x, offset, weight, bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride[0]}, padding={self.padding[0]}"
