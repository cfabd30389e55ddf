import numpy as np
import pycocotools.mask as coco_mask
import pytest
import torch

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
