"""The deformable convolution against a direct computation of the modulated deformable convolution (DCNv2) as the
original CUDA kernel defines it: sample ``x`` at ``(h_in + i*dil + dy, w_in + j*dil + dx)`` bilinearly (0 outside;
no sample at all when the point is outside ``(-1, H) x (-1, W)``), multiply by the mask, sum with the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolact.backbone import ResNetBackbone, dcn_blocks
from yolact.dcn import ModulatedDeformConv2d


def bilinear(img: np.ndarray, h: float, w: float) -> float:
    height, width = img.shape
    if not (-1 < h < height and -1 < w < width):
        return 0.0
    h0, w0 = int(np.floor(h)), int(np.floor(w))
    lh, lw = h - h0, w - w0
    val = 0.0
    for hh, ww, wt in ((h0, w0, (1 - lh) * (1 - lw)), (h0, w0 + 1, (1 - lh) * lw),
                       (h0 + 1, w0, lh * (1 - lw)), (h0 + 1, w0 + 1, lh * lw)):
        if 0 <= hh < height and 0 <= ww < width:
            val += wt * img[hh, ww]
    return val


def direct_dcn(x, weight, bias, offset, mask, stride, pad, dil):
    b, cin, height, width = x.shape
    cout, _, k, _ = weight.shape
    ho, wo = offset.shape[2:]
    out = np.zeros((b, cout, ho, wo))
    for n in range(b):
        for oy in range(ho):
            for ox in range(wo):
                cols = np.zeros((cin, k, k))
                for i in range(k):
                    for j in range(k):
                        t = i * k + j
                        py = oy * stride - pad + i * dil + offset[n, 2 * t, oy, ox]
                        px = ox * stride - pad + j * dil + offset[n, 2 * t + 1, oy, ox]
                        for c in range(cin):
                            cols[c, i, j] = bilinear(x[n, c], py, px) * mask[n, t, oy, ox]
                out[n, :, oy, ox] = (weight * cols[None]).sum((1, 2, 3)) + bias
    return out


@pytest.mark.parametrize("stride,dil", [(1, 1), (2, 1), (1, 2)])
def test_dcn_matches_direct_computation(stride, dil):
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(3, 4, 3, stride=stride, padding=dil, dilation=dil).double()
    with torch.no_grad():
        layer.offset_mask.weight.normal_(0, 0.8)  # offsets of a few pixels, some samples leave the map
        layer.offset_mask.bias.normal_(0, 1.0)
        layer.bias.normal_()
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    y = layer(x).detach().numpy()
    # offsets/masks from the conv exactly as the original: thirds (o1, o2, m), offset = cat(o1, o2), sigmoid(m)
    om = layer.offset_mask(x).detach()
    o1, o2, m = torch.chunk(om, 3, dim=1)
    offset, mask = torch.cat([o1, o2], 1).numpy(), torch.sigmoid(m).numpy()
    assert np.abs(offset).max() > 2  # the test exercises real deformation
    ref = direct_dcn(x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(), offset, mask,
                     stride, dil, dil)
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_zero_offsets_give_a_half_weighted_plain_convolution():
    layer = ModulatedDeformConv2d(3, 5, 3, stride=2, padding=1)  # offset conv starts at zero: mask = 0.5
    x = torch.randn(1, 3, 8, 8)
    ref = torch.nn.functional.conv2d(x, layer.weight * 0.5, layer.bias, stride=2, padding=1)
    torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)


def test_dcn_placement_follows_the_paper_interval():
    assert [i for i, f in enumerate(dcn_blocks(23, 23, 3)) if f] == list(range(0, 23, 3))
    assert [i for i, f in enumerate(dcn_blocks(4, 4, 3)) if f] == [0, 3]
    assert [i for i, f in enumerate(dcn_blocks(3, 3, 3)) if f] == [0]
    assert not any(dcn_blocks(3, 0, 1))
    with torch.device("meta"):
        r101 = ResNetBackbone(101, dcn_layers=(0, 4, 23, 3), dcn_interval=3)
        r50 = ResNetBackbone(50, dcn_layers=(0, 4, 6, 3), dcn_interval=1)
    def dcn(net):
        return sorted(n for n, m in net.named_modules() if isinstance(m, ModulatedDeformConv2d))
    assert len(dcn(r101)) == 2 + 8 + 1 and "layer3.21.conv2" in dcn(r101) and "layer4.1.conv2" not in dcn(r101)
    assert len(dcn(r50)) == 4 + 6 + 3 and not any(n.startswith("layer1") for n in dcn(r50))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_runs_under_autocast_in_float32(dtype):
    # torchvision's CPU deform_conv2d has no bfloat16 kernel and autocast no rule for it: the layer upcasts
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(4, 5)
    torch.nn.init.normal_(layer.offset_mask.weight, std=0.1)
    x = torch.randn(2, 4, 9, 9)
    ref = layer(x)
    for inp in (x, x.to(dtype)):  # first layer under autocast (float32 input) or after other autocast layers
        with torch.autocast("cpu", dtype=dtype):
            out = layer(inp)
        assert out.dtype == inp.dtype
        err = (out.float() - ref).abs().max() / ref.abs().max()
        assert err < 0.05, (inp.dtype, err)
        with torch.autocast("cpu", dtype=dtype):  # the offsets really came from the reduced-precision conv
            om = layer.offset_mask(inp)
        assert om.dtype == dtype


def test_yolact_plus_runs_under_bfloat16_autocast():
    from yolact.model import Yolact

    torch.manual_seed(0)
    kw = dict(backbone="resnet50", num_classes=3, max_size=96, fpn_channels=32, dcn_layers=(0, 4, 6, 3), dcn_interval=3,
              use_maskiou=True)
    ref = Yolact(**kw).eval()
    amp = Yolact(**kw).eval()  # run under the runner's autocast (runtime.precision=bf16)
    amp.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        a = ref(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = amp(x)
    err = (a["coefs"] - b["coefs"]).abs().max() / a["coefs"].abs().max()
    assert b["coefs"].dtype == torch.float32 and err < 0.1
    amp.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = amp(torch.randn(2, 3, 96, 96))
    (out["coefs"].sum() + out["prototypes"].sum()).backward()
    dcn = [m for m in amp.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert dcn and all(m.weight.grad is not None and torch.isfinite(m.weight.grad).all() for m in dcn)
