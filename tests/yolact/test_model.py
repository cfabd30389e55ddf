"""The mmengine model: modes, shapes, training step, prediction mapping, Hydra configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import forge.config  # noqa: F401  (registers the forge.* config resolvers)
from forge.data.structures import DetSample, ImageMeta, Instances
from yolact.configs import OFFICIAL_MODELS
from yolact.convert import build_official
from yolact.loss import YolactLoss
from yolact.model import Yolact
from yolact.postprocess import to_original

ROOT = Path(__file__).resolve().parents[2]


def gt_sample(h: int, w: int) -> DetSample:
    boxes = torch.tensor([[20.0, 30.0, 140.0, 200.0], [100.0, 60.0, 250.0, 180.0], [0.0, 0.0, 60.0, 60.0]])
    masks = torch.zeros((3, h, w), dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    gt = Instances(boxes=boxes, labels=torch.tensor([0, 3, 7]), masks=masks,
                   iscrowd=torch.tensor([False, False, True]))
    return DetSample(meta=ImageMeta(image_id=1, ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w)), gt=gt)


def test_tensor_mode_shapes_and_semantic_only_in_training():
    net = build_official("yolact_resnet50", num_classes=5).eval()
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        out = net(x)
    grids = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    a = 3 * sum(h * w for h, w in grids)
    assert out["boxes"].shape == (2, a, 4) and out["cls_logits"].shape == (2, a, 6)
    assert out["coefs"].shape == (2, a, 32) and out["prototypes"].shape == (2, 32, 32, 40)
    assert out["anchors"].shape == (a, 4) and "semantic" not in out
    assert out["coefs"].abs().max() <= 1 and out["prototypes"].min() >= 0
    net.train()
    assert net(x)["semantic"].shape == (2, 5, 16, 20)


def test_loss_mode_yolact_plus_backward():
    torch.manual_seed(0)
    net = build_official("yolact_plus_resnet50", num_classes=8).train()
    sample = gt_sample(256, 256)
    x = torch.randn(1, 3, 256, 256)
    losses = net(x, [sample], mode="loss")
    assert set(losses) == {"loss_cls", "loss_box", "loss_mask", "loss_semantic", "loss_maskiou"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert net.maskiou_net.cls.weight.grad is not None and net.head.cls.weight.grad.abs().sum() > 0
    assert net.backbone.layer2[0].conv2.offset_mask.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs data_samples"):
        net(x, None, mode="loss")
    with pytest.raises(ValueError, match="unknown mode"):
        net(x, mode="bogus")


def test_predict_maps_to_original_image_with_padding():
    # input 100x200 holding a resized 100x150 image (padding on the right); original 200x300 (scale 0.5)
    protos = torch.ones((1, 25, 50)) * 4
    det = {"boxes": torch.tensor([[0.1, 0.2, 0.3, 0.6]]), "labels": torch.tensor([2]),
           "scores": torch.tensor([0.9]), "coefs": torch.ones((1, 1))}
    meta = ImageMeta(image_id=0, ori_shape=(200, 300), img_shape=(100, 150), pad_shape=(100, 200),
                     scale_factor=(0.5, 0.5))
    pred = to_original(det, protos, meta, (100, 200))
    # relative -> input px (20, 20, 60, 60) -> original px (40, 40, 120, 120)
    torch.testing.assert_close(pred.boxes, torch.tensor([[40.0, 40.0, 120.0, 120.0]]))
    assert pred.masks.shape == (1, 200, 300) and pred.masks.dtype == torch.bool
    ys, xs = pred.masks[0].nonzero(as_tuple=True)
    # crop (1 prototype cell = 8 original px of padding) then bilinear upsampling
    assert 28 <= int(xs.min()) <= 36 and 124 <= int(xs.max()) <= 132
    assert 28 <= int(ys.min()) <= 36 and 124 <= int(ys.max()) <= 132
    assert pred.mask_scores is None and pred.labels.tolist() == [2]


def test_predict_mode_returns_samples_in_original_coordinates():
    net = build_official("yolact_resnet50", num_classes=3, conf_thresh=0.0).eval()
    x = torch.randn(1, 3, 128, 128)
    meta = ImageMeta(image_id=7, ori_shape=(60, 90), img_shape=(128, 128), pad_shape=(128, 128),
                     scale_factor=(128 / 90, 128 / 60))
    res = net(x, [DetSample(meta=meta)], mode="predict")
    pred = res[0].pred
    assert res[0].meta.image_id == 7 and 0 < len(pred.scores) <= 100
    assert pred.masks.shape[1:] == (60, 90)
    assert float(pred.boxes[:, 2].max()) <= 90 and float(pred.boxes[:, 3].max()) <= 60
    assert float(pred.boxes.min()) >= 0
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])
    for nms in ("cc_fast", "standard"):
        net.test_cfg["nms"] = nms
        assert len(net(x, mode="predict")[0].pred.scores) > 0


def test_constructor_validation():
    with pytest.raises(ValueError, match="nms must be"):
        Yolact(backbone="resnet50", nms="greedy")
    with pytest.raises(ValueError, match="unknown backbone"):
        Yolact(backbone="vgg16")
    with pytest.raises(TypeError, match="YolactLoss-like"):
        Yolact(backbone="resnet50", loss=torch.nn.CrossEntropyLoss())


@pytest.mark.parametrize("name", sorted(OFFICIAL_MODELS))
def test_hydra_model_configs_build_the_original_networks(name):
    """Each released model's config, composed as Hydra does, builds the network of the ORIGINAL code: the same
    parameters and shapes as the official state dict (the fixture manifest, written by dbolya/yolact itself) after
    the key map. ``OFFICIAL_MODELS`` is read from these files, so this is what checks both."""
    from tests.yolact.official_fixtures import load_case
    from yolact.keymaps import convert_state_dict

    cfg = OmegaConf.create({
        "dataset": {"num_classes": 80},
        "schedule": {"batch_size": 8},
        "loss": OmegaConf.load(ROOT / "forge/configs/loss" / ("yolact_plus.yaml" if "plus" in name else "yolact.yaml")),
        "model": OmegaConf.load(ROOT / "forge/configs/model/yolact" / f"{name}.yaml"),
    })
    with torch.device("meta"):
        net = instantiate(cfg.model, _convert_="partial")
    manifest, _ = load_case(name)
    official = {k: torch.empty(shape, device="meta") for k, shape in manifest["state_dict"].items()}
    ours = convert_state_dict(official, darknet=name == "yolact_darknet53")
    own = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert own == {k: tuple(v.shape) for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    assert isinstance(net.loss_module, YolactLoss) and net.loss_module.mask_weight == 6.125
    assert net.loss_module.box_weight == 1.5 and net.loss_module.maskiou_weight == 25
    # anchors (max_size, scales, squares) are compared with the original's priors in test_official_outputs.py


def test_bfloat16_autocast_runs_the_network_in_bf16_and_the_rest_in_float32():
    """Under the runner's autocast (runtime.precision=bf16) the network runs in bfloat16; outputs, loss and
    post-processing are float32."""
    torch.manual_seed(0)
    net = Yolact(backbone="resnet18", num_classes=8, max_size=128, fpn_channels=64).eval()  # gt_sample's labels
    seen = {}
    net.head.register_forward_hook(lambda m, i, o: seen.update(head=o[1].dtype))
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        a = net(x)
        assert seen["head"] == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = net(x)
            preds = net(x, mode="predict")
    assert seen["head"] == torch.bfloat16
    for key in ("boxes", "cls_logits", "coefs", "prototypes", "anchors"):
        assert b[key].dtype == torch.float32, key
        err = (a[key] - b[key]).abs().max() / a[key].abs().max().clamp_min(1e-6)
        assert (key == "anchors" or 0 < err) and err < 0.05, (key, err)  # different (bf16 was used) but close
    assert preds[0].pred.scores.dtype == torch.float32 and preds[0].pred.masks.dtype in (torch.bool, torch.float32)
    net.train()
    sample = gt_sample(128, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = net(x, [sample], mode="loss")
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
    with pytest.raises(ValueError, match="autocast_dtype='auto' was replaced by runtime.precision"):
        Yolact(backbone="resnet18", num_classes=3, autocast_dtype="auto")


def test_training_on_box_only_data_names_the_image():
    net = Yolact(backbone="resnet18", num_classes=2, max_size=64, fpn_channels=16)
    gt = Instances(boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]), labels=torch.tensor([0]))  # no masks
    sample = DetSample(meta=ImageMeta(image_id=42, file_name="val/000042.png"), gt=gt)
    with pytest.raises(ValueError, match=r"image 42 \(val/000042\.png\) has no GT masks"):
        net(torch.zeros(1, 3, 64, 64), [sample], mode="loss")


def test_anchor_cache_is_a_bounded_lru():
    """Inference on images of ever new sizes must not grow memory: the anchors of at most ANCHOR_CACHE_SIZE input
    shapes are kept, the most recently used ones, and a hit returns the stored tensor."""
    from yolact.anchors import ANCHOR_CACHE_SIZE, _cached, make_anchors

    net = build_official("yolact_resnet50", num_classes=3)
    _cached.cache_clear()
    first = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    kept = net.anchors(first, torch.device("cpu"))
    torch.testing.assert_close(kept, make_anchors(first, net.scales, net.aspect_ratios, net.max_size, True))
    for i in range(3 * ANCHOR_CACHE_SIZE):
        shapes = [(10 + i, 11 + i), (5, 6), (3, 3), (2, 2), (1, 1)]
        assert net.anchors(shapes, "cpu").shape[0] == 3 * sum(h * w for h, w in shapes)
        if i % 2 == 0:  # kept in use: stays cached
            assert net.anchors(first, "cpu") is kept
    info = _cached.cache_info()
    assert info.currsize == ANCHOR_CACHE_SIZE and info.maxsize == ANCHOR_CACHE_SIZE
    assert net.anchors(first, "cpu") is kept  # most recently used, never evicted
    net.anchors([(40, 40), (5, 6), (3, 3), (2, 2), (1, 1)], "cpu")
    evicted = [(10, 11), (5, 6), (3, 3), (2, 2), (1, 1)]  # the oldest: recomputed on the next call
    misses = _cached.cache_info().misses
    net.anchors(evicted, "cpu")
    assert _cached.cache_info().misses == misses + 1
