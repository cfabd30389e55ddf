"""SamPredictor: the resize-longest-side + pad convention and its inverse on a non-square image, batched prompts,
and clear errors for bad prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesam.build import sam_from_encoder
from edgesam.image_encoder import ImageEncoderViT
from edgesam.predictor import SamPredictor
from edgesam.transforms import ResizeLongestSide, resized_shape

H, W = 120, 176  # non-square; 1024 / 176 and 256 / 176 are not integers


def test_resized_shape_rounds_half_up():
    assert resized_shape(H, W, 1024) == (698, 1024)  # 120 * 1024 / 176 = 698.18
    assert resized_shape(H, W, 256) == (175, 256)  # 174.55 -> 175
    assert resized_shape(W, H, 256) == (256, 175)
    assert resized_shape(100, 300, 1024) == (341, 1024)  # 341.33
    with pytest.raises(ValueError, match="must be positive"):
        resized_shape(0, 5, 1024)


def test_coordinate_round_trip():
    t = ResizeLongestSide(1024)
    pts = torch.tensor([[0.0, 0.0], [W, H], [70.5, 50.25]])
    fwd = t.apply_coords(pts, (H, W))
    # per-axis scales: x by 1024/176, y by 698/120 (the rounded height), so the far corner lands on the resized size
    torch.testing.assert_close(fwd[1], torch.tensor([1024.0, 698.0]))
    torch.testing.assert_close(t.invert_coords(fwd, (H, W)), pts)
    boxes = torch.tensor([[30.0, 20.0, 130.0, 95.0]])
    corners = t.apply_coords(boxes.reshape(1, 2, 2), (H, W)).reshape(1, 4)
    torch.testing.assert_close(t.apply_boxes(boxes, (H, W)), corners)
    torch.testing.assert_close(t.invert_boxes(t.apply_boxes(boxes, (H, W)), (H, W)), boxes)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    enc = ImageEncoderViT(img_size=256, embed_dim=32, depth=2, num_heads=2, window_size=7, global_attn_indexes=(1,))
    p = SamPredictor(sam_from_encoder(enc, 256).eval())
    rng = np.random.default_rng(0)
    p.set_image(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    return p


def test_mask_postprocess_undoes_resize_and_padding(predictor):
    """A low-res mask drawn at a box's position in the padded 256 input comes back as that box in the image, and
    the padded part of the low-res map has no effect."""
    model = predictor.model
    h, w = predictor.input_size
    assert (h, w) == (175, 256)
    box = np.array([30.0, 20.0, 130.0, 95.0])
    x0, y0, x1, y1 = predictor.transform.apply_boxes(torch.tensor(box)[None], (H, W))[0].tolist()
    s = 64 / 256  # low-res pixels per input pixel
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    inside = (xx >= x0 * s) & (xx < x1 * s) & (yy >= y0 * s) & (yy < y1 * s)
    low = torch.where(inside, 10.0, -10.0)[None, None]
    padded_rows = yy[:, 0] > h * s + 1  # low-res rows wholly in the bottom padding (plus a margin of one)
    low2 = low.clone()
    low2[..., padded_rows, :] = 50.0
    out = model.postprocess_masks(low, (h, w), (H, W))
    out2 = model.postprocess_masks(low2, (h, w), (H, W))
    assert out.shape == (1, 1, H, W)
    torch.testing.assert_close(out, out2)
    mask = out[0, 0] > 0
    ref = torch.zeros(H, W, dtype=torch.bool)
    ref[20:95, 30:130] = True
    # one low-res pixel is 4 input pixels = 2.75 original pixels: away from the box edges by more than that,
    # every pixel is right (a misplaced padding crop or a wrong per-axis scale would shift the whole box)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    edge = torch.minimum(torch.minimum((xs - 30).abs(), (xs - 130).abs()),
                         torch.minimum((ys - 20).abs(), (ys - 95).abs()))
    near = edge < 3.0
    assert torch.equal(mask[~near], ref[~near])
    iou = (mask & ref).sum() / (mask | ref).sum()
    assert iou > 0.95, iou


def test_single_and_batched_prompts(predictor):
    masks, iou, low = predictor.predict(point_coords=np.array([[70.0, 50.0]]), point_labels=np.array([1]))
    assert masks.shape == (3, H, W) and masks.dtype == bool and iou.shape == (3,) and low.shape == (3, 64, 64)
    boxes = np.array([[30.0, 20.0, 130.0, 95.0], [0.0, 0.0, W, H]])
    bm, bi, bl = predictor.predict(box=boxes, multimask_output=False, return_logits=True)
    assert bm.shape == (2, 1, H, W) and bi.shape == (2, 1) and bl.shape == (2, 1, 64, 64)
    for i in range(2):  # a batch of boxes equals each box alone
        m, io, lo = predictor.predict(box=boxes[i], multimask_output=False, return_logits=True)
        np.testing.assert_allclose(bm[i], m, atol=1e-5)
        np.testing.assert_allclose(bi[i], io, atol=1e-5)
    # a previous low-res mask and points + box together
    m, _, _ = predictor.predict(point_coords=np.array([[80.0, 60.0], [40.0, 30.0]]), point_labels=np.array([1, 0]),
                                box=boxes[0], mask_input=low[:1], multimask_output=False)
    assert m.shape == (1, H, W)
    # points per box in a batch
    m, _, _ = predictor.predict(point_coords=np.array([[[70.0, 50.0]], [[10.0, 10.0]]]),
                                point_labels=np.array([[1], [0]]), box=boxes)
    assert m.shape == (2, 3, H, W)


def test_bgr_is_rgb_reversed(predictor):
    rgb = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    p = SamPredictor(predictor.model)
    p.set_image(rgb)
    ref = p.get_image_embedding().clone()
    p.set_image(rgb[..., ::-1], image_format="BGR")
    torch.testing.assert_close(p.get_image_embedding(), ref)
    assert p.original_size == (40, 30) and p.input_size == (256, 192)
    torch.testing.assert_close(p.to_original(torch.tensor([192.0, 256.0])), torch.tensor([30.0, 40.0]))


def test_bad_prompts_are_clear_errors(predictor):
    pt, lab = np.array([[70.0, 50.0]]), np.array([1])
    with pytest.raises(ValueError, match="empty prompt"):
        predictor.predict()
    with pytest.raises(ValueError, match=r"point \(200, 50\) is outside the 176x120 image"):
        predictor.predict(point_coords=np.array([[200.0, 50.0]]), point_labels=lab)
    with pytest.raises(ValueError, match="point_labels must be 0"):
        predictor.predict(point_coords=pt, point_labels=np.array([2]))
    with pytest.raises(ValueError, match="point_labels are needed"):
        predictor.predict(point_coords=pt)
    with pytest.raises(ValueError, match=r"point_coords \(1, 3\)"):
        predictor.predict(point_coords=np.zeros((1, 3)), point_labels=lab)
    with pytest.raises(ValueError, match=r"box corner \(-5, 0\) is outside"):
        predictor.predict(box=np.array([-5.0, 0.0, 10.0, 10.0]))
    with pytest.raises(ValueError, match="x0 <= x1"):
        predictor.predict(box=np.array([50.0, 10.0, 20.0, 30.0]))
    with pytest.raises(ValueError, match=r"box must be \(4,\) or \(N, 4\)"):
        predictor.predict(box=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"mask_input must be \(1, 64, 64\)"):
        predictor.predict(point_coords=pt, point_labels=lab, mask_input=np.zeros((1, 256, 256)))
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\) uint8"):
        predictor.set_image(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="set an image"):
        SamPredictor(predictor.model).predict(point_coords=pt, point_labels=lab)
