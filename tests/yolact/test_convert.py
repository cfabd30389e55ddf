"""Official checkpoint conversion: key map, recognition, strictness, files, ImageNet backbone init."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tests.yolact.official_fixtures import load_case, seeded_state_dict
from yolact.convert import convert_state_dict, detect_model, load_model, main, map_official_key
from yolact.model import Yolact


def test_key_map_examples():
    assert map_official_key("fpn.lat_layers.0.weight") == "fpn.lateral.2.weight"  # stored C5 first
    assert map_official_key("fpn.pred_layers.2.bias") == "fpn.output.0.bias"
    assert map_official_key("fpn.downsample_layers.1.weight") == "fpn.extra.1.weight"
    assert map_official_key("fpn.downsample_layers.2.weight") is None  # surplus, dropped as the original
    assert map_official_key("backbone.layer1.0.conv1.weight") is None  # legacy naming, dropped
    assert map_official_key("backbone.layers.1.0.conv2.conv_offset_mask.weight") == \
        "backbone.layer2.0.conv2.offset_mask.weight"
    assert map_official_key("backbone.layers.3.2.downsample.1.running_var") == \
        "backbone.layer4.2.downsample.1.running_var"
    assert map_official_key("proto_net.8.weight") == "protonet.up_conv.weight"
    assert map_official_key("prediction_layers.0.conf_layer.bias") == "head.cls.bias"
    assert map_official_key("maskiou_net.maskiou_net.10.weight") == "maskiou_net.cls.weight"
    assert map_official_key("backbone._preconv.1.running_mean", darknet=True) == "backbone.stem.bn.running_mean"
    assert map_official_key("backbone.layers.2.0.0.weight", darknet=True) == "backbone.stages.2.0.conv.weight"
    assert map_official_key("backbone.layers.2.5.conv2.1.bias", darknet=True) == \
        "backbone.stages.2.5.conv2.bn.bias"
    for bad in ("prediction_layers.1.conf_layer.weight", "proto_net.6.weight", "something.else"):
        with pytest.raises(KeyError):
            map_official_key(bad)


@pytest.fixture(scope="module")
def official_plus_r50(tmp_path_factory):
    manifest, _ = load_case("yolact_plus_resnet50")
    state = seeded_state_dict(manifest["state_dict"], 0)
    path = tmp_path_factory.mktemp("ckpt") / "yolact_plus_resnet50_54_800000.pth"
    legacy = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # older files lack them
    legacy["backbone.layer1.0.conv1.weight"] = torch.zeros(1)  # legacy duplicate key, ignored
    legacy["fpn.downsample_layers.2.weight"] = torch.zeros(1)  # v1.0 surplus level, ignored
    torch.save(legacy, path)
    return path, state


def test_load_official_file_and_round_trip_through_our_format(official_plus_r50, tmp_path, capsys):
    path, state = official_plus_r50
    net, name = load_model(str(path))
    assert name == "yolact_plus_resnet50" and net.maskiou_net is not None and net.num_anchors == 9
    ref = convert_state_dict(state, darknet=False)
    for k, v in ref.items():
        assert torch.equal(net.state_dict()[k], v), k
    out = tmp_path / "ours.pth"
    assert main([str(path), str(out)]) == 0
    assert "yolact_plus_resnet50" in capsys.readouterr().out
    again, name2 = load_model(str(out))
    assert name2 == "yolact_plus_resnet50"
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        a, b = net(x), again(x)
    for k in ("boxes", "cls_logits", "coefs", "prototypes"):
        assert torch.equal(a[k], b[k])


def test_refuses_partial_or_foreign_checkpoints(official_plus_r50, tmp_path):
    _, state = official_plus_r50
    partial = dict(state)
    partial.pop("prediction_layers.0.conf_layer.weight")
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(KeyError, match="missing"):
        load_model(str(tmp_path / "partial.pth"))
    extra = dict(state, **{"mystery.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match=r"extra\.pth has 1 keys that are not YOLACT's.*mystery\.weight"):
        load_model(str(tmp_path / "extra.pth"))
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "nope.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"garbage\.pth: not a readable PyTorch checkpoint"):
        load_model(str(tmp_path / "garbage.pth"))


def test_reads_a_runner_written_checkpoint(tmp_path):
    # mmengine stores its message hub (history buffers of numpy scalars) beside the weights
    import numpy as np
    from mmengine.logging import MessageHub

    from yolact.convert import read_checkpoint

    net = Yolact(backbone="resnet18", num_classes=3, max_size=64, fpn_channels=16)
    hub = MessageHub.get_instance("test_reads_a_runner_written_checkpoint")
    hub.update_scalar("train/loss", np.float64(1.5))
    path = tmp_path / "iter_10.pth"
    torch.save({"meta": {"iter": 10}, "state_dict": net.state_dict(), "message_hub": hub.state_dict()}, path)
    state, meta = read_checkpoint(str(path))
    assert meta == {"iter": 10} and state.keys() == net.state_dict().keys()


def test_recognition_from_manifests():
    expected = {"yolact_base": "yolact_base", "yolact_resnet50": "yolact_resnet50",
                "yolact_darknet53": "yolact_darknet53", "yolact_plus_base": "yolact_plus_base",
                "yolact_plus_resnet50": "yolact_plus_resnet50", "yolact_im700": "yolact_base"}
    for case, name in expected.items():
        manifest, _ = load_case(case)
        shapes = {k: torch.empty(0) for k in manifest["state_dict"]}
        assert detect_model(shapes) == name
    with torch.device("meta"):
        r18 = Yolact(backbone="resnet18")
    with pytest.raises(ValueError, match="basic-block"):
        detect_model(r18.state_dict())
    manifest, _ = load_case("yolact_im700")
    assert detect_model(dict.fromkeys(manifest["state_dict"]), "weights/yolact_im700_54_800000.pth") == "yolact_im700"


def test_backbone_from_torchvision_imagenet_checkpoint(tmp_path):
    tv = torchvision.models.resnet50()
    path = tmp_path / "resnet50-19c8e357.pth"
    torch.save(tv.state_dict(), path)
    net = Yolact(backbone="resnet50", backbone_checkpoint=str(path), dcn_layers=(0, 4, 6, 3))
    assert not torch.equal(net.backbone.conv1.weight, tv.conv1.weight)  # read for training only, not when built
    net.init_weights()  # what the runner calls before training
    ours = net.backbone.state_dict()
    for k, v in tv.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(ours[k], v), k  # DCN conv2 weights included
    assert not net.backbone.layer2[0].conv2.offset_mask.weight.any()
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="not a torchvision ResNet-50"):
        net.backbone.load_imagenet(str(tmp_path / "bad.pth"))


def test_a_missing_backbone_checkpoint_only_matters_for_training(tmp_path):
    # forge-test / forge-infer build the model from a run's config, whose ImageNet file may not be on this machine
    missing = str(tmp_path / "resnet101_reducedfc.pth")
    net = Yolact(backbone="resnet18", num_classes=3, max_size=64, fpn_channels=16, backbone_checkpoint=missing)
    with pytest.raises(FileNotFoundError, match="resnet101_reducedfc.pth.*model.backbone_checkpoint"):
        net.init_weights()


def _coco80_from_shapes(root) -> None:
    """A 2-image COCO-2017-layout set with the 80 COCO categories (the shapes' ids 1/2/4/7/9 are COCO ids)."""
    import json
    import os

    from forge.data.shapes import make_shapes
    from yolact.configs import COCO_CATEGORY_IDS, COCO_CLASSES

    make_shapes(str(root), num_train=1, num_val=2, size=96, seed=0)
    for split in ("train", "val"):
        os.rename(root / split, root / f"{split}2017")
        ann = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        ann["categories"] = [{"id": i, "name": n} for i, n in zip(COCO_CATEGORY_IDS, COCO_CLASSES, strict=True)]
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(ann))


def test_forge_test_evaluates_an_official_release_directly(tmp_path):
    """forge-test experiment=yolact/r50_550_coco checkpoint=<official .pth>: same detections as the converted file."""
    import json

    from forge.cli.test import run_test
    from forge.config import ConfigError
    from tests.forge.helpers import compose_cfg

    manifest, _ = load_case("yolact_resnet50")
    state = seeded_state_dict(manifest["state_dict"], 0)
    official, converted = tmp_path / "yolact_resnet50_54_800000.pth", tmp_path / "ours.pth"
    torch.save(state, official)
    assert main([str(official), str(converted)]) == 0
    _coco80_from_shapes(tmp_path / "coco")
    results = {}
    for name, ckpt in (("official", official), ("converted", converted)):
        prefix = tmp_path / name
        cfg = compose_cfg(["experiment=yolact/r50_550_coco", f"dataset.root={tmp_path / 'coco'}",
                           "pipeline.img_size=160", "model.max_size=550", f"checkpoint={ckpt}",
                           f"work_dir={tmp_path / ('run_' + name)}", "schedule.num_workers=0",
                           "runtime.vis.tensorboard=false", f"+dataset.evaluator.0.outfile_prefix={prefix}"],
                          config_name="test")
        metrics = run_test(cfg)
        assert "coco/segm_mAP" in metrics and "coco/bbox_mAP" in metrics
        results[name] = json.loads((tmp_path / f"{name}.segm.json").read_text())
    assert results["official"], "random official weights gave no detection above 0.05: the comparison is empty"
    assert results["official"] == results["converted"]
    torch.save({k: v for k, v in state.items() if not k.startswith("proto_net.")}, official)  # incomplete release
    cfg.checkpoint = str(official)
    with pytest.raises(ConfigError, match="original format but does not fit"):
        run_test(cfg)


def test_load_from_an_official_release_keeps_layers_of_another_shape(tmp_path, caplog):
    """Fine-tuning from COCO weights on a 5-class set: everything but the class-dependent layers is loaded."""
    from forge.data.shapes import make_shapes
    from forge.runner import build_runner
    from tests.forge.helpers import compose_cfg

    manifest, _ = load_case("yolact_resnet50")
    state = seeded_state_dict(manifest["state_dict"], 0)
    official = tmp_path / "yolact_resnet50_54_800000.pth"
    torch.save(state, official)
    make_shapes(str(tmp_path / "shapes"), num_train=1, num_val=1, size=96, seed=0)
    cfg = compose_cfg(["experiment=yolact/r50_550_coco", "dataset=shapes", f"dataset.root={tmp_path / 'shapes'}",
                       "schedule.num_workers=0", "runtime.vis.tensorboard=false", f"load_from={official}"])
    runner = build_runner(cfg, str(tmp_path / "run"), mode="train")
    runner.load_checkpoint(str(official))
    ours = convert_state_dict(state, darknet=False)
    own = runner.model.state_dict()
    differ = sorted(k for k in own if own[k].shape != ours[k].shape)
    assert differ == ["head.cls.bias", "head.cls.weight", "semantic_head.conv.bias", "semantic_head.conv.weight"]
    for k in own:
        if k not in differ:
            assert torch.equal(own[k], ours[k]), k
