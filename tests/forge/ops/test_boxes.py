import pytest
import torch
import torchvision

from forge.ops.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_ioa,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes,
    flip_boxes,
    scale_boxes,
)


def _random_boxes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50
    return torch.cat([xy, xy + wh], dim=1)


def test_format_round_trips():
    b = _random_boxes(20)
    assert torch.allclose(box_xywh_to_xyxy(box_xyxy_to_xywh(b)), b, atol=1e-5)
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(b)), b, atol=1e-5)
    xywh = box_xyxy_to_xywh(torch.tensor([[10.0, 20.0, 15.0, 30.0]]))
    assert xywh.tolist() == [[10.0, 20.0, 5.0, 10.0]]
    assert box_xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 4.0, 2.0]])).tolist() == [[2.0, 1.0, 4.0, 2.0]]


def test_area_and_iou_match_torchvision():
    a, b = _random_boxes(30, 1), _random_boxes(40, 2)
    assert torch.allclose(box_area(a), torchvision.ops.box_area(a))
    assert torch.allclose(box_iou(a, b), torchvision.ops.box_iou(a, b), atol=1e-6)
    # inverted boxes have zero area instead of a negative one
    assert box_area(torch.tensor([[5.0, 5.0, 1.0, 1.0]])).item() == 0.0


def test_ioa_is_over_the_first_set():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[5.0, 0.0, 20.0, 10.0]])
    ioa = box_ioa(a, b)
    assert ioa.shape == (2, 1)
    assert ioa[0, 0].item() == pytest.approx(0.5)
    assert ioa[1, 0].item() == 0.0  # zero-area box -> 0, not nan
    assert box_ioa(b, a)[0, 0].item() == pytest.approx(50 / 150)


def test_empty_inputs():
    e = torch.zeros((0, 4))
    assert box_iou(e, _random_boxes(3)).shape == (0, 3)
    assert box_ioa(_random_boxes(3), e).shape == (3, 0)
    assert box_area(e).shape == (0,)


def test_clip_scale_flip():
    b = torch.tensor([[-5.0, -2.0, 120.0, 40.0]])
    assert clip_boxes(b, (30, 100)).tolist() == [[0.0, 0.0, 100.0, 30.0]]
    assert scale_boxes(b, (2.0, 0.5)).tolist() == [[-10.0, -1.0, 240.0, 20.0]]
    assert scale_boxes(scale_boxes(b, (2.0, 0.5)), (1 / 2.0, 1 / 0.5)).tolist() == b.tolist()
    assert flip_boxes(torch.tensor([[10.0, 0.0, 30.0, 5.0]]), 100).tolist() == [[70.0, 0.0, 90.0, 5.0]]


def test_bad_shape_is_named():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_area(torch.zeros(3, 5))


# Degenerate boxes. torchvision.ops.box_iou gives NaN where the union is empty (two zero-area boxes); ours gives 0,
# the value torchvision.ops.nms effectively uses (a NaN IoU never exceeds the threshold, so nothing is suppressed).
DEGENERATE = {
    "zero_area": [[5.0, 5, 5, 5], [5, 5, 5, 5], [20, 20, 20, 20], [0, 0, 10, 10]],
    "zero_width": [[3.0, 0, 3, 10], [3, 2, 3, 12], [3, 0, 3, 10], [0, 0, 10, 10]],
    "zero_height": [[0.0, 4, 10, 4], [2, 4, 8, 4], [0, 0, 10, 10]],
    "identical": [[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [50, 50, 60, 60]],
    "far_apart": [[0.0, 0, 1, 1], [100, 100, 101, 101], [1000, 1000, 1010, 1010], [-50, -50, -40, -40]],
    "touching": [[0.0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20]],
}


def slow_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def slow_ioa(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return iw * ih / area if area > 0 else 0.0


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_iou_on_degenerate_boxes_matches_torchvision_without_nan(case):
    b = torch.tensor(DEGENERATE[case])
    ours = box_iou(b, b)
    ref = torchvision.ops.box_iou(b, b)
    assert not ours.isnan().any()
    empty_union = (torchvision.ops.box_area(b)[:, None] + torchvision.ops.box_area(b)[None, :]) == 0
    assert torch.equal(ref.isnan(), empty_union)  # torchvision: NaN exactly where the union is empty
    torch.testing.assert_close(ours, ref.nan_to_num(0.0))
    torch.testing.assert_close(ours, torch.tensor([[slow_iou(x, y) for y in b.tolist()] for x in b.tolist()]))
    # batched: one call over stacked sets equals the calls one by one
    torch.testing.assert_close(box_iou(torch.stack([b, b.flip(0)]), torch.stack([b, b]))[1], box_iou(b.flip(0), b))


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_ioa_on_degenerate_boxes_matches_formula(case):
    b = torch.tensor(DEGENERATE[case])
    other = torch.tensor([[0.0, 0, 6, 6], [4, 4, 4, 4], [-100, -100, 2000, 2000]])
    for x, y in ((b, other), (other, b), (b, b)):
        ours = box_ioa(x, y)
        assert not ours.isnan().any()
        torch.testing.assert_close(ours, torch.tensor([[slow_ioa(p, q) for q in y.tolist()] for p in x.tolist()]))


def test_iou_of_random_boxes_is_torchvisions_bit_for_bit_and_integer_boxes_work():
    a, b = _random_boxes(50, 3), _random_boxes(70, 4)
    assert torch.equal(box_iou(a, b), torchvision.ops.box_iou(a, b))
    ints = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15]])
    torch.testing.assert_close(box_iou(ints, ints), torchvision.ops.box_iou(ints.float(), ints.float()))


def test_conversions_flip_clip_are_batched():
    b = torch.stack([_random_boxes(5, 5), _random_boxes(5, 6)])  # (2, 5, 4)
    torch.testing.assert_close(box_xyxy_to_cxcywh(b)[1], box_xyxy_to_cxcywh(b[1]))
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(b)), b)
    assert flip_boxes(b, 120).shape == (2, 5, 4)
    torch.testing.assert_close(flip_boxes(flip_boxes(b, 120), 120), b)
    torch.testing.assert_close(flip_boxes(b, 120)[0], flip_boxes(b[0], 120))
    assert box_area(b).shape == (2, 5)
    clipped = clip_boxes(b, (40, 60))
    assert float(clipped[..., 0::2].max()) <= 60 and float(clipped[..., 1::2].max()) <= 40 and clipped.min() >= 0
    # a box ending at the right edge starts at 0 once flipped (exclusive x2)
    assert flip_boxes(torch.tensor([[90.0, 0, 100, 5]]), 100).tolist() == [[0.0, 0.0, 10.0, 5.0]]
