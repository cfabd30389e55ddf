import numpy as np
import pycocotools.mask as coco_mask
import pytest
import torch
import torch.nn.functional as F

from forge.ops.masks import (
    as_rles,
    mask_to_rle,
    masks_to_boxes,
    paste_masks_in_boxes,
    polygons_to_rle,
    resize_masks,
    rle_area,
    rle_iou,
    rle_to_box,
    rle_to_mask,
    segm_to_mask,
    segm_to_rle,
)


def _masks(n=5, h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    m = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
        m[i, y : y + rng.integers(1, h - y), x : x + rng.integers(1, w - x)] = True
    m[-1] = False  # one empty mask
    return torch.from_numpy(m)


def test_encode_decode_round_trip_and_json_ready():
    m = _masks()
    rles = mask_to_rle(m)
    assert len(rles) == 5 and all(isinstance(r["counts"], str) for r in rles)
    assert rles[0]["size"] == [37, 53]
    assert torch.equal(rle_to_mask(rles), m)
    assert torch.equal(rle_to_mask(rles[0]), m[0])
    assert mask_to_rle(m[0])[0] == rles[0]  # a single (H, W) mask
    assert mask_to_rle(torch.zeros((0, 4, 4), dtype=torch.bool)) == []


def test_polygons_match_pycocotools():
    poly = [[10.5, 5.0, 40.0, 8.0, 35.0, 30.0, 12.0, 25.0], [1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]
    ref = coco_mask.merge(coco_mask.frPyObjects(poly, 37, 53))
    ours = polygons_to_rle(poly, 37, 53)
    assert ours["counts"] == ref["counts"].decode()
    assert torch.equal(segm_to_mask(poly, 37, 53), torch.from_numpy(coco_mask.decode(ref).astype(bool)))
    # parts with fewer than 3 points enclose nothing and are skipped
    assert polygons_to_rle(poly + [[1.0, 2.0]], 37, 53) == ours
    assert rle_area(polygons_to_rle([[1.0, 2.0]], 37, 53)) == 0
    with pytest.raises(ValueError, match="odd"):
        polygons_to_rle([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], 37, 53)


def test_uncompressed_and_compressed_rle():
    m = _masks()[0].numpy()
    flat = m.flatten(order="F").astype(np.uint8)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    unc = {"size": [37, 53], "counts": runs}
    assert torch.equal(segm_to_mask(unc, 37, 53), torch.from_numpy(m))
    comp = segm_to_rle(unc, 37, 53)
    assert segm_to_rle(comp, 37, 53) == comp
    byte = {"size": [37, 53], "counts": comp["counts"].encode()}
    assert as_rles([byte]) == [comp]
    with pytest.raises(ValueError):
        segm_to_rle(42, 37, 53)
    with pytest.raises(ValueError, match="mask 0"):
        as_rles([{"counts": "x"}])


def test_area_box_iou():
    m = _masks(n=300)  # >= 256 RLEs (pycocotools' area() overflows there under NumPy 2)
    rles = mask_to_rle(m)
    assert rle_area(rles).tolist() == m.flatten(1).sum(1).tolist()
    assert torch.equal(rle_to_box(rles), masks_to_boxes(m))
    assert masks_to_boxes(m)[-1].tolist() == [0, 0, 0, 0]
    one = torch.zeros((1, 10, 10), dtype=torch.bool)
    one[0, 2:5, 3:8] = True
    assert masks_to_boxes(one).tolist() == [[3.0, 2.0, 8.0, 5.0]]  # exclusive x2/y2
    ious = rle_iou(rles[:4], rles[:3])
    ref = coco_mask.iou(
        [{"size": r["size"], "counts": r["counts"].encode()} for r in rles[:4]],
        [{"size": r["size"], "counts": r["counts"].encode()} for r in rles[:3]],
        [0, 0, 0],
    )
    assert np.array_equal(ious, ref)
    assert rle_iou([], rles[:2]).shape == (0, 2)


def test_resize_and_paste():
    m = torch.zeros((1, 4, 4), dtype=torch.bool)
    m[0, :2, :2] = True
    up = resize_masks(m, (8, 8))
    assert up.shape == (1, 8, 8) and up[0, :4, :4].all() and not up[0, 4:, :].any()
    assert resize_masks(torch.zeros((0, 4, 4)), (8, 8)).shape == (0, 8, 8)
    # a full box-relative mask fills exactly the box
    pasted = paste_masks_in_boxes(
        torch.ones((2, 7, 7)), torch.tensor([[2.0, 3.0, 6.0, 5.0], [0.0, 0.0, 10.0, 8.0]]), (8, 10)
    )
    expect = torch.zeros((8, 10), dtype=torch.bool)
    expect[3:5, 2:6] = True
    assert torch.equal(pasted[0], expect)
    assert pasted[1].all()
    soft = paste_masks_in_boxes(torch.ones((1, 3, 3)), torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (6, 6), threshold=None)
    assert soft.dtype == torch.float32 and soft[0, 1:3, 1:3].min() == 1.0
    # border pixels blend with the zero padding (bilinear, align_corners=False); far pixels are 0
    assert 0.5 < soft[0, 0, 0] < 1.0 and soft[0, 5, 5] == 0.0


def _soft_masks(n=7, h=9, w=11, seed=0):
    return torch.rand((n, h, w), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("output_shape", [None, (30, 20), (41, 37)])  # none, crop, pad (bottom/right)
@pytest.mark.parametrize("threshold", [0.5, None])
def test_resize_masks_in_chunks_equals_one_call(output_shape, threshold):
    masks = _soft_masks(n=13)
    size = (37, 91)  # a size where (1, N, H, W) "masks as channels" results would depend on N by an ulp
    ref = torch.cat([F.interpolate(m[None, None], size, mode="bilinear", align_corners=False)[0] for m in masks])
    if output_shape is not None:
        oh, ow = output_shape
        ref = F.pad(ref[:, :oh, :ow], (0, max(0, ow - size[1]), 0, max(0, oh - size[0])))
    if threshold is not None:
        ref = ref > threshold
    per_mask = 37 * 91 * 4
    for limit in (None, 1, per_mask, 3 * per_mask + 5, 10**9):  # one chunk, 1 mask, 1 mask, 3 masks, one chunk
        out = resize_masks(masks, size, threshold, output_shape=output_shape, memory_limit=limit)
        assert out.dtype == ref.dtype and torch.equal(out, ref), limit


def test_resize_masks_keeps_float_dtype_and_rejects_bad_limits():
    half = _soft_masks().to(torch.bfloat16)
    assert resize_masks(half, (5, 5), None).dtype == torch.bfloat16
    assert resize_masks(half > 0.5, (5, 5), None).dtype == torch.float32
    with pytest.raises(ValueError, match="memory_limit must be a positive number of bytes"):
        resize_masks(half, (5, 5), memory_limit=0)
    assert resize_masks(torch.zeros((0, 4, 4)), (8, 8), output_shape=(3, 2)).shape == (0, 3, 2)


@pytest.mark.parametrize("threshold", [0.5, None])
def test_paste_masks_in_chunks_equals_one_call(threshold):
    masks = _soft_masks(n=9, h=7, w=7, seed=1)
    g = torch.Generator().manual_seed(2)
    xy = torch.rand((9, 2), generator=g) * 30
    boxes = torch.cat([xy, xy + torch.rand((9, 2), generator=g) * 20 + 1], 1)
    whole = paste_masks_in_boxes(masks, boxes, (40, 45), threshold, memory_limit=None)
    for limit in (1, 12 * 40 * 45 * 2):  # one box per chunk, two boxes per chunk
        assert torch.equal(paste_masks_in_boxes(masks, boxes, (40, 45), threshold, memory_limit=limit), whole)
