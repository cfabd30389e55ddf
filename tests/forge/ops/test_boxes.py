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
