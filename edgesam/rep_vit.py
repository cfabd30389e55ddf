"""EdgeSAM's image encoder: RepViT-M1 (Wang et al., 2023) with EdgeSAM's FPN-style fusion of the last two stages
and SAM's neck (Zhou et al., 2023, Sec. 4): ``(B, 3, 1024, 1024)`` -> ``(B, 256, 64, 64)``.

Stem 3 -> 24 -> 48 (two stride-2 conv-BN, GELU between), stages of 48 / 96 / 192 / 384 channels (3 / 4 / 16 / 3
blocks, the first block of stages 2-4 downsamples), squeeze-excite on alternate blocks; the stride-16 stage (192)
and the stride-32 stage (384, upsampled 2x bicubic) are projected to 256 by 1x1 convs and summed.

Parameter names follow ``edge_sam`` (``features.N``, ``fuse_stage2``, ``fuse_stage3.op_list.0``, ``neck.0-3``).
``fuse()`` folds every BatchNorm into its conv and each RepVGG token mixer's three branches into one 3x3 conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesam.common import Conv2dBN, sam_neck

# per stage: channels, then one letter per block: D downsampling block (stride 2, no SE), S stride-1 block with
# squeeze-excite, N stride-1 block without
M1_STAGES: tuple[tuple[int, str], ...] = (
    (48, "SNN"),
    (96, "DSNN"),
    (192, "D" + "SN" * 7 + "N"),
    (384, "DSN"),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor`` at least ``divisor`` (timm's rule with ``round_limit=0``)."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``, reduction to ``make_divisible(C / 4)`` channels (timm's
    ``SqueezeExcite(C, 0.25)``, the module the official code uses)."""

    def __init__(self, channels: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = make_divisible(channels * ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class RepVGGDW(nn.Module):
    """Re-parameterisable depth-wise token mixer: ``bn(dw3x3(x)) + bn(dw1x1(x)) + x``; ``fuse()`` turns it into
    one depth-wise 3x3 conv with bias (kept as ``conv``; ``conv1`` is dropped)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = Conv2dBN(dim, dim, 1, 1, 0, groups=dim)
        self.fused = False

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.conv(x)
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> None:
        if self.fused:
            return
        conv, conv1 = self.conv.fused(), self.conv1.fused()
        # the 1x1 branch and the identity are 3x3 kernels with only a centre tap
        w = conv.weight.clone()
        w[:, :, 1, 1] += conv1.weight[:, :, 0, 0] + 1.0
        conv.weight.copy_(w)
        conv.bias.add_(conv1.bias)
        self.conv = conv
        del self.conv1
        self.fused = True


class Residual(nn.Module):
    """``x + m(x)`` (the channel mixer; no stochastic depth at inference)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: Tensor) -> Tensor:
        return x + self.m(x)


class RepViTBlock(nn.Module):
    """Token mixer then residual channel mixer (1x1 expand x2, GELU, 1x1).

    Stride 1: RepVGG depth-wise mixer (+ SE). Stride 2 (``downsample``): depth-wise 3x3 stride 2 (+ SE), then a
    1x1 conv to the new width; the channel mixer runs at the new width.
    """

    def __init__(self, inp: int, oup: int, use_se: bool, downsample: bool) -> None:
        super().__init__()
        se = SqueezeExcite(inp) if use_se else nn.Identity()
        if downsample:
            self.token_mixer = nn.Sequential(Conv2dBN(inp, inp, 3, 2, 1, groups=inp), se, Conv2dBN(inp, oup))
        else:
            if inp != oup:
                raise ValueError(f"a stride-1 RepViT block keeps its width, got {inp} -> {oup}")
            self.token_mixer = nn.Sequential(RepVGGDW(inp), se)
        self.channel_mixer = Residual(nn.Sequential(Conv2dBN(oup, 2 * oup), nn.GELU(), Conv2dBN(2 * oup, oup)))

    def forward(self, x: Tensor) -> Tensor:
        return self.channel_mixer(self.token_mixer(x))


class RepViT(nn.Module):
    """RepViT-M1 + EdgeSAM fusion + SAM neck.

    ``forward`` returns the ``(B, 256, S/16, S/16)`` embedding; ``forward_features`` also returns the stem and
    stage outputs (strides 4, 4, 8, 16, 32), the multi-scale features of the optional region-proposal head.
    """

    def __init__(self, img_size: int = 1024, stages: tuple[tuple[int, str], ...] = M1_STAGES,
                 upsample_mode: str = "bicubic", out_chans: int = 256) -> None:
        super().__init__()
        if upsample_mode not in ("bicubic", "bilinear"):
            raise ValueError(f"upsample_mode must be 'bicubic' or 'bilinear', got {upsample_mode!r}")
        self.img_size = img_size
        self.upsample_mode = upsample_mode
        c0 = stages[0][0]
        stem = nn.Sequential(Conv2dBN(3, c0 // 2, 3, 2, 1), nn.GELU(), Conv2dBN(c0 // 2, c0, 3, 2, 1))
        layers: list[nn.Module] = [stem]
        self.stage_ends: list[int] = []  # index in ``features`` of each stage's last block
        inp = c0
        for channels, blocks in stages:
            oup = make_divisible(channels)
            for letter in blocks:
                if letter not in "DSN":
                    raise ValueError(f"RepViT block code must be D, S or N, got {letter!r}")
                layers.append(RepViTBlock(inp, oup, use_se=letter == "S", downsample=letter == "D"))
                inp = oup
            self.stage_ends.append(len(layers) - 1)
        self.features = nn.ModuleList(layers)
        c2, c3 = make_divisible(stages[2][0]), make_divisible(stages[3][0])
        self.fuse_stage2 = nn.Conv2d(c2, 256, kernel_size=1, bias=False)
        self.fuse_stage3 = nn.Module()  # official container name: op_list.0 is the 1x1 conv, op_list.1 the upsampling
        self.fuse_stage3.op_list = nn.ModuleList([nn.Conv2d(c3, 256, kernel_size=1, bias=False)])
        self.neck = sam_neck(256, out_chans)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``stem``, ``stage0``-``stage3`` feature maps and the ``final`` embedding."""
        out = {"stem": self.features[0](x)}
        x = out["stem"]
        for i in range(1, len(self.features)):
            x = self.features[i](x)
            if i in self.stage_ends:
                out[f"stage{self.stage_ends.index(i)}"] = x
        s2, s3 = out["stage2"], self.fuse_stage3.op_list[0](out["stage3"])
        up = F.interpolate(s3, size=s2.shape[-2:], mode=self.upsample_mode, align_corners=False)
        out["final"] = self.neck(self.fuse_stage2(s2) + up)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)["final"]

    @torch.no_grad()
    def fuse(self) -> RepViT:
        """Fold BatchNorms and RepVGG branches in place for inference (eval-mode statistics); returns self. The
        fused model no longer has the checkpoint's parameter names."""
        for module in list(self.modules()):
            if isinstance(module, RepVGGDW):
                module.fuse()
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Conv2dBN):
                    setattr(parent, name, child.fused())
        return self
