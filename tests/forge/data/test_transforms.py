"""Transforms keep image, boxes and masks consistent; geometry, filtering and pixel dtypes are exact."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from forge.data import transforms as T
from forge.data.shapes import render_image
from forge.data.structures import ImageMeta, Instances
from forge.ops.masks import masks_to_boxes

FILL = (123.68, 116.78, 103.94)  # a fractional fill colour, as YOLACT's mean


def shapes_sample(seed: int, size: int = 96, crowd_first: bool = False) -> dict:
    img, objects = render_image(np.random.default_rng(seed), size)
    masks = torch.from_numpy(np.stack([o.visible for o in objects]))
    n = len(objects)
    iscrowd = torch.zeros(n, dtype=torch.bool)
    if crowd_first:
        iscrowd[0] = True
    gt = Instances(
        boxes=masks_to_boxes(masks),
        labels=torch.arange(n) % 3,
        masks=masks,
        iscrowd=iscrowd,
        ann_ids=torch.arange(1, n + 1),
    )
    meta = ImageMeta(image_id=seed, ori_shape=(size, size), img_shape=(size, size), pad_shape=(size, size))
    return dict(img=img.astype(np.float32), gt=gt, meta=meta)


def coord_sample(h: int = 60, w: int = 80, boxes=((10, 20, 30, 40),)) -> dict:
    """Image whose pixel (y, x) is (x, y, 7): the value says where it came from. Masks fill their boxes."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([xs, ys, np.full_like(xs, 7)], -1).astype(np.float32)
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros((b.shape[0], h, w), dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(b.long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    gt = Instances(boxes=b, labels=torch.zeros(len(b), dtype=torch.long), masks=masks, ann_ids=torch.arange(len(b)))
    return dict(img=img, gt=gt, meta=ImageMeta(image_id=0, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w)))


def assert_aligned(sample: dict) -> None:
    img, gt = sample["img"], sample["gt"]
    assert gt.masks.shape[1:] == img.shape[:2]
    assert gt.masks.dtype == torch.bool and gt.boxes.dtype == torch.float32
    n = len(gt)
    assert gt.labels.shape == (n,) and gt.iscrowd.shape == (n,) and gt.ann_ids.shape == (n,)
    nonempty = gt.masks.flatten(1).any(1)
    if nonempty.any():
        diff = (masks_to_boxes(gt.masks[nonempty]) - gt.boxes[nonempty]).abs().max()
        assert diff <= 1.0, f"box and mask bounding box differ by {diff} px"


ALL = [
    T.PhotometricDistort(),
    T.Expand(fill=FILL, prob=1.0),
    T.RandomSampleCrop(),
    T.RandomMirror(prob=1.0),
    T.Resize(150),
    T.Resize(40),
    T.Resize((50, 70), keep_ratio=True),
    T.FilterSmallBoxes(4),
]


@pytest.mark.parametrize("seed", range(6))
def test_each_transform_keeps_boxes_on_masks(seed):
    for t in ALL:
        np.random.seed(seed)
        assert_aligned(t(shapes_sample(seed)))


@pytest.mark.parametrize("seed", range(8))
def test_yolact_pipeline_keeps_boxes_on_masks(seed):
    np.random.seed(seed)
    pipe = T.Compose(
        [
            T.PhotometricDistort(),
            T.Expand(fill=FILL),
            T.RandomSampleCrop(),
            T.RandomMirror(),
            T.Resize(128),
            T.FilterSmallBoxes(4),
            None,
        ]
    )
    s = pipe(shapes_sample(100 + seed, crowd_first=seed % 2 == 0))
    assert s["img"].shape == (128, 128, 3)
    assert_aligned(s)
    w = s["gt"].boxes[:, 2] - s["gt"].boxes[:, 0]
    h = s["gt"].boxes[:, 3] - s["gt"].boxes[:, 1]
    assert bool(((w > 4) & (h > 4)).all())


def test_pipeline_is_deterministic_under_numpy_seed():
    pipe = T.Compose([T.PhotometricDistort(), T.Expand(fill=FILL), T.RandomSampleCrop(), T.RandomMirror(),
                      T.Resize(64)])
    outs = []
    for _ in range(2):
        np.random.seed(123)
        outs.append(pipe(shapes_sample(5)))
    assert np.array_equal(outs[0]["img"], outs[1]["img"])
    assert torch.equal(outs[0]["gt"].boxes, outs[1]["gt"].boxes)
    assert torch.equal(outs[0]["gt"].masks, outs[1]["gt"].masks)


def test_mirror_geometry():
    s = coord_sample()
    extra = torch.tensor([[0.0, 0.0, 5.0, 5.0]])
    s["extra_boxes"] = dict(vbox=extra)
    out = T.RandomMirror(prob=1.0)(s)
    assert out["gt"].boxes.tolist() == [[50.0, 20.0, 70.0, 40.0]]
    assert out["extra_boxes"]["vbox"].tolist() == [[75.0, 0.0, 80.0, 5.0]]
    assert out["img"][0, 0, 0] == 79 and out["img"][0, 79, 0] == 0
    assert out["meta"].flip is True
    assert_aligned(out)
    assert T.RandomMirror(prob=0.0)(coord_sample())["meta"].flip is False


def test_expand_geometry():
    np.random.seed(0)
    out = T.Expand(fill=(1.0, 2.0, 3.0), ratio_range=(2.0, 2.0), prob=1.0)(coord_sample())
    img = out["img"]
    assert img.shape == (120, 160, 3)
    # the original's top-left pixel (0, 0, 7) sits at the offset; the rest is fill
    ys, xs = np.nonzero((img[..., 2] == 7) & (img[..., 0] == 0) & (img[..., 1] == 0))
    top, left = int(ys[0]), int(xs[0])
    assert out["gt"].boxes.tolist() == [[10.0 + left, 20.0 + top, 30.0 + left, 40.0 + top]]
    assert np.array_equal(img[top : top + 60, left : left + 80, 0], np.tile(np.arange(80), (60, 1)))
    outside = np.ones(img.shape[:2], bool)
    outside[top : top + 60, left : left + 80] = False
    assert (img[outside] == np.array([1.0, 2.0, 3.0])).all()
    assert_aligned(out)


@pytest.mark.parametrize("seed", range(10))
def test_random_crop_geometry(seed):
    np.random.seed(seed)
    boxes = ((2, 2, 12, 12), (30, 10, 70, 50), (60, 40, 78, 58))
    src = coord_sample(boxes=boxes)
    crop = T.RandomSampleCrop(recompute_boxes=False)
    out = crop(coord_sample(boxes=boxes))
    img = out["img"]
    x1, y1 = int(img[0, 0, 0]), int(img[0, 0, 1])
    h, w = img.shape[:2]
    assert np.array_equal(img, src["img"][y1 : y1 + h, x1 : x1 + w])
    if (h, w) != (60, 80):
        assert w >= 0.3 * 80 - 1 and h >= 0.3 * 60 - 1 and 0.5 <= h / w <= 2 + 0.1
    kept = out["gt"].ann_ids.tolist()
    assert kept, "a crop always keeps at least one object"
    for j, k in enumerate(kept):
        b = src["gt"].boxes[k]
        centre = (b[:2] + b[2:]) / 2
        assert x1 < centre[0] < x1 + w and y1 < centre[1] < y1 + h
        expect = torch.stack(
            [b[0].clamp(x1, x1 + w), b[1].clamp(y1, y1 + h), b[2].clamp(x1, x1 + w), b[3].clamp(y1, y1 + h)]
        ) - torch.tensor([x1, y1, x1, y1])
        assert torch.allclose(out["gt"].boxes[j], expect)
        assert torch.equal(out["gt"].masks[j], src["gt"].masks[k, y1 : y1 + h, x1 : x1 + w])


def test_random_crop_never_keeps_only_crowd_and_leaves_crowd_only_images():
    s = coord_sample(boxes=((10, 10, 20, 20),))
    s["gt"] = Instances(
        boxes=s["gt"].boxes,
        labels=s["gt"].labels,
        masks=s["gt"].masks,
        iscrowd=torch.tensor([True]),
        ann_ids=s["gt"].ann_ids,
    )
    np.random.seed(0)
    out = T.RandomSampleCrop()(s)
    assert out["img"].shape == (60, 80, 3)
    for seed in range(10):
        np.random.seed(seed)
        s = shapes_sample(seed, crowd_first=True)
        out = T.RandomSampleCrop()(s)
        assert bool((~out["gt"].iscrowd).any())


def test_random_crop_enforced_iou_gives_up_without_cropping():
    np.random.seed(0)
    crop = T.RandomSampleCrop(min_ious=(0.99,), enforce_min_iou=True, max_trials=5, max_modes=3)
    out = crop(coord_sample(boxes=((0, 0, 4, 4),)))
    assert out["img"].shape == (60, 80, 3)


def test_resize_geometry_and_meta():
    s = coord_sample(h=100, w=200, boxes=((20, 10, 120, 50),))
    out = T.Resize((50, 60), recompute_boxes=False)(s)
    assert out["img"].shape == (50, 60, 3)
    assert torch.allclose(out["gt"].boxes, torch.tensor([[6.0, 5.0, 36.0, 25.0]]))
    assert out["meta"].scale_factor == pytest.approx((0.3, 0.5))
    assert out["meta"].img_shape == (50, 60)
    assert out["gt"].masks.shape == (1, 50, 60)
    assert_aligned(out)
    assert T.Resize(100, keep_ratio=True).target_size(100, 200) == (50, 100)
    assert T.Resize(size=None, short_side=800, max_long_side=1333).target_size(400, 600) == (800, 1200)
    assert T.Resize(size=None, short_side=800, max_long_side=1000).target_size(400, 800) == (500, 1000)
    with pytest.raises(ValueError):
        T.Resize(size=None)


def test_filter_small_boxes_is_strict_and_keeps_alignment():
    s = coord_sample(boxes=((0, 0, 3, 10), (10, 0, 14, 10), (20, 0, 25, 10), (30, 0, 40, 4)))
    s["extra_boxes"] = dict(vbox=s["gt"].boxes.clone() + 1)
    out = T.FilterSmallBoxes(4)(s)
    assert out["gt"].ann_ids.tolist() == [2]
    assert out["gt"].masks.shape[0] == 1 and out["extra_boxes"]["vbox"].tolist() == [[21.0, 1.0, 26.0, 11.0]]
    assert len(T.FilterSmallBoxes(100)(coord_sample())["gt"]) == 0


def test_normalize_is_refused_with_the_new_place_named():
    # datasets never normalise: an old config's Normalize step fails at once instead of normalising twice
    with pytest.raises(TypeError, match="model.data_preprocessor.*forge.models.ImagePreprocessor"):
        T.Normalize(mean=FILL, std=(58.40, 57.12, 57.38), to_bgr=False)


def test_no_paper_constant_in_the_constructors():
    # sizes, thresholds and fill colours are the paper's pipeline's (forge/configs/pipeline/), not defaults
    with pytest.raises(TypeError):
        T.Expand()
    with pytest.raises(TypeError):
        T.FilterSmallBoxes()
    with pytest.raises(ValueError, match="give size or short_side"):
        T.Resize()
    assert T.RandomSampleCrop().enforce_min_iou  # SSD's minimum-IoU test; YOLACT's no-op copy is its config's
    with pytest.raises(ValueError, match="fill must be pixel values"):
        T.Expand(fill=(0.0, 0.0, 300.0))


def _uint8_sample(h: int = 30, w: int = 40) -> dict:
    s = coord_sample(h, w, boxes=((5, 5, 20, 25),))
    s["img"] = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return s


def test_uint8_images_stay_uint8_where_nothing_is_computed_in_float():
    np.random.seed(0)
    assert T.RandomMirror(prob=1.0)(_uint8_sample())["img"].dtype == np.uint8
    assert T.Expand(fill=(0, 128, 255), prob=1.0)(_uint8_sample())["img"].dtype == np.uint8
    for seed in range(5):
        np.random.seed(seed)
        assert T.RandomSampleCrop()(_uint8_sample())["img"].dtype == np.uint8
    # a fractional fill colour is kept exact on a float canvas
    np.random.seed(0)
    out = T.Expand(fill=FILL, ratio_range=(2.0, 2.0), prob=1.0)(_uint8_sample())["img"]
    assert out.dtype == np.float32 and np.allclose(out[-1, -1], FILL)
    assert T.PhotometricDistort()(_uint8_sample())["img"].dtype == np.float32
    for t in (T.Resize(8), T.Expand(fill=FILL, prob=1.0), T.PhotometricDistort()):
        with pytest.raises(TypeError, match="uint8 or float32"):
            t(dict(_uint8_sample(), img=np.zeros((4, 4, 3), np.float64)))


def test_resize_of_uint8_rounds_the_float_resize_unless_keep_float():
    s = _uint8_sample()
    ref = torch.nn.functional.interpolate(torch.from_numpy(s["img"]).permute(2, 0, 1)[None].float(), (17, 23),
                                          mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    rounded = T.Resize((17, 23))(_uint8_sample())["img"]
    assert rounded.dtype == np.uint8 and np.array_equal(rounded, np.rint(ref).astype(np.uint8))
    kept = T.Resize((17, 23), keep_float=True)(_uint8_sample())["img"]
    assert kept.dtype == np.float32 and np.array_equal(kept, ref)
    same = T.Resize((30, 40), keep_float=True)(_uint8_sample())["img"]  # nothing to interpolate: returned as is
    assert same.dtype == np.uint8 and np.array_equal(same, _uint8_sample()["img"])


def test_crop_clips_further_boxes_to_the_patch_instead_of_inverting_them():
    # CrowdHuman's visible boxes move with the full boxes; one lying outside the patch becomes zero-size, not inverted
    np.random.seed(3)
    s = coord_sample(boxes=((20, 15, 60, 45),))
    s["extra_boxes"] = dict(vbox=torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    out = T.RandomSampleCrop(min_ious=(float("-inf"),), min_scale=0.5)(s)
    h, w = out["img"].shape[:2]
    v = out["extra_boxes"]["vbox"][0]
    assert (h, w) != (60, 80)
    assert float(v[2]) >= float(v[0]) and float(v[3]) >= float(v[1])
    assert 0 <= float(v.min()) and float(v[0::2].max()) <= w and float(v[1::2].max()) <= h


def test_hsv_round_trip_matches_colorsys():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (7, 9, 3)).astype(np.float32)
    img[0, 0] = [10, 10, 10]  # grey: hue 0
    hsv = T.rgb_to_hsv(img)
    for y, x in [(0, 0), (3, 4), (6, 8)]:
        h, s, v = colorsys.rgb_to_hsv(*(img[y, x] / 255.0))
        assert hsv[y, x] == pytest.approx([h * 360 % 360, s, v * 255], abs=1e-3)
    assert np.allclose(T.hsv_to_rgb(hsv), img, atol=1e-3)


def test_photometric_distort_changes_only_the_image():
    s = shapes_sample(3)
    before_img = s["img"].copy()
    before = (s["gt"].boxes.clone(), s["gt"].masks.clone())
    changed = False
    for seed in range(5):
        np.random.seed(seed)
        out = T.PhotometricDistort()(dict(s, img=before_img.copy()))
        assert torch.equal(out["gt"].boxes, before[0]) and torch.equal(out["gt"].masks, before[1])
        assert out["img"].min() >= 0 and out["img"].max() <= 255 and out["img"].shape == before_img.shape
        changed |= not np.allclose(out["img"], before_img)
    assert changed
    with pytest.raises(ValueError):
        T.PhotometricDistort(contrast_range=(1.5, 0.5))


def test_box_only_samples_pass_through_geometric_transforms():
    s = coord_sample(boxes=((10, 10, 50, 50),))
    s["gt"] = Instances(boxes=s["gt"].boxes, labels=s["gt"].labels)
    np.random.seed(1)
    out = T.Compose([T.Expand(fill=FILL, prob=1.0), T.RandomSampleCrop(), T.RandomMirror(prob=1.0),
                     T.Resize(32)])(s)
    assert out["gt"].masks is None and out["img"].shape == (32, 32, 3)
    b = out["gt"].boxes
    assert bool((b[:, 2] > b[:, 0]).all()) and float(b.min()) >= 0 and float(b.max()) <= 32


GEOMETRIC = [
    T.Expand(fill=(255.0, 255.0, 255.0), prob=1.0),
    T.RandomSampleCrop(recompute_boxes=False),
    T.RandomMirror(prob=1.0),
    T.Resize(150, recompute_boxes=False),
    T.Resize(40, recompute_boxes=False),
    T.Resize((50, 70), keep_ratio=True, recompute_boxes=False),
]
COORD_BOXES = ((10, 20, 30, 40), (40, 5, 70, 25), (52, 30, 78, 58))


def assert_follow_the_image(sample: dict, tol: float = 1.0) -> None:
    """Each output pixel of ``coord_sample`` holds the (x, y) it came from (channel 2 is 7 on the source image): the
    pixels of each mask and the pixels inside each box must come from that object's original box. This checks masks
    and boxes against the image, not against each other."""
    img, gt = sample["img"], sample["gt"]
    src_x, src_y = torch.from_numpy(img[..., 0].copy()), torch.from_numpy(img[..., 1].copy())
    on_source = torch.from_numpy(np.abs(img[..., 2] - 7.0) < 1e-3)
    for i, aid in enumerate(gt.ann_ids.tolist()):
        x1, y1, x2, y2 = COORD_BOXES[aid]  # the mask covers pixels x1..x2-1, y1..y2-1
        inside = torch.zeros_like(on_source)
        bx1, by1, bx2, by2 = gt.boxes[i].tolist()
        inside[int(np.ceil(by1)) : int(np.floor(by2)), int(np.ceil(bx1)) : int(np.floor(bx2))] = True
        for what, region in (("mask", gt.masks[i]), ("box", inside)):
            sel = region & on_source
            assert sel.any(), (what, aid)
            xs, ys = src_x[sel], src_y[sel]
            assert xs.min() >= x1 - tol and xs.max() <= x2 - 1 + tol, (what, aid, xs.min(), xs.max())
            assert ys.min() >= y1 - tol and ys.max() <= y2 - 1 + tol, (what, aid, ys.min(), ys.max())
        # and the box does not stop short of the mask
        mb = masks_to_boxes(gt.masks[i][None])[0]
        assert (mb[:2] >= gt.boxes[i, :2] - tol).all() and (mb[2:] <= gt.boxes[i, 2:] + tol).all(), (aid, mb)


@pytest.mark.parametrize("seed", range(6))
def test_geometric_transforms_move_image_masks_and_boxes_together(seed):
    for t in GEOMETRIC:
        np.random.seed(seed)
        assert_follow_the_image(t(coord_sample(boxes=COORD_BOXES)))
    np.random.seed(seed)
    pipe = T.Compose([T.Expand(fill=(255.0, 255.0, 255.0)), T.RandomSampleCrop(recompute_boxes=False),
                      T.RandomMirror(), T.Resize(96, recompute_boxes=False)])
    assert_follow_the_image(pipe(coord_sample(boxes=COORD_BOXES)), tol=1.5)


def test_the_image_check_catches_a_shifted_mask():
    s = T.RandomMirror(prob=1.0)(coord_sample(boxes=COORD_BOXES))
    s["gt"].masks = s["gt"].masks.roll(3, dims=2)
    with pytest.raises(AssertionError):
        assert_follow_the_image(s)


def test_keep_classes_and_filter_small_masks():
    s = coord_sample(boxes=((0, 0, 4, 4), (10, 10, 30, 30), (40, 5, 60, 25)))
    s["gt"] = Instances(boxes=s["gt"].boxes, labels=torch.tensor([0, 2, 1]), masks=s["gt"].masks,
                        ann_ids=s["gt"].ann_ids)
    kept = T.KeepClasses(["b", 2], classes=["a", "b", "c"])(dict(s))
    assert kept["gt"].labels.tolist() == [2, 1] and kept["gt"].ann_ids.tolist() == [1, 2]
    assert_aligned(kept)
    small = T.FilterSmallMasks(17)(dict(s))  # areas 16, 400, 400
    assert small["gt"].ann_ids.tolist() == [1, 2]
    assert T.FilterSmallMasks(16)(dict(s))["gt"].ann_ids.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="'z'"):
        T.KeepClasses(["z"], classes=["a"])
