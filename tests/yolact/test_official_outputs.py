"""Fidelity against the ORIGINAL implementation: official networks were built on CPU with seeded weights and run on
a seeded input (tests/fixtures/yolact/README.md). Here the same weights are regenerated from the manifest, converted
with ``yolact.convert`` and run through our model; raw outputs and detections must match."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forge.data.structures import DetSample, ImageMeta
from tests.yolact.official_fixtures import load_case, seeded_input, seeded_state_dict
from yolact.anchors import make_anchors
from yolact.configs import official_kwargs
from yolact.convert import build_for_state, convert_state_dict, detect_model
from yolact.model import Yolact
from yolact.postprocess import detect_single

CASES = [
    ("yolact_resnet50", "yolact_resnet50"),
    ("yolact_plus_resnet50", "yolact_plus_resnet50"),
    ("yolact_darknet53", "yolact_darknet53"),
    ("yolact_base", "yolact_base"),
    pytest.param("yolact_im700", "yolact_im700", marks=pytest.mark.slow),  # its anchors: test_official_anchors
    ("yolact_plus_base", "yolact_plus_base"),
    pytest.param("yolact_base_550", "yolact_base", marks=pytest.mark.slow),
    pytest.param("yolact_plus_base_550", "yolact_plus_base", marks=pytest.mark.slow),
]
ATOL = 1e-4


def close(ours: torch.Tensor, ref: np.ndarray, atol: float = ATOL, rtol: float = 0.0) -> None:
    np.testing.assert_allclose(ours.detach().double().numpy(), ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize("case,model", [("yolact_im700", "yolact_im700"), ("yolact_plus_base_550", "yolact_plus_base"),
                                        ("yolact_base_550", "yolact_base"), ("yolact_darknet53", "yolact_darknet53")])
def test_official_anchors(case, model):
    """Anchors alone (cheap) against the official priors, including the 700 px model's rescaled scales."""
    manifest, ref = load_case(case)
    with torch.device("meta"):
        net = Yolact(**official_kwargs(model))
    h, w = manifest["input_size"]
    shapes = [(h, w)]
    for _ in range(7):  # conv1 / maxpool / stages / P6 / P7: each halves with rounding up (3x3 or 1x1, pad 1)
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))
    anchors = make_anchors(shapes[3:8], net.scales, net.aspect_ratios, net.max_size, net.square_anchors)
    assert anchors.shape[0] == int(ref["num_anchors"])
    close(anchors[torch.from_numpy(ref["anchor_idx"]).long()], ref["priors"])
    close(anchors.double().sum(0), ref["priors_sum"], atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("case,model", CASES)
def test_official_outputs(case, model):
    manifest, ref = load_case(case)
    official = seeded_state_dict(manifest["state_dict"], manifest["weight_seed"])
    file_hint = "yolact_im700_54_800000.pth" if model == "yolact_im700" else ""
    assert detect_model(official, file_hint) == model  # architecture recognised from keys and shapes
    kwargs = official_kwargs(model)
    net = build_for_state(convert_state_dict(official, kwargs["backbone"] == "darknet53"), kwargs).eval()
    assert detect_model(net.state_dict(), file_hint) == model
    x = seeded_input(manifest["input_size"], manifest["input_seed"])
    with torch.no_grad():
        out = net(x)
        semantic = net.semantic_head(net.fpn(net.backbone(x))[0])[0]
    idx = torch.from_numpy(ref["anchor_idx"]).long()
    probs = F.softmax(out["cls_logits"][0], -1)
    assert out["anchors"].shape[0] == int(ref["num_anchors"])
    close(out["anchors"][idx], ref["priors"])
    close(out["boxes"][0, idx], ref["loc"])
    close(probs[idx], ref["conf"])
    close(out["coefs"][0, idx], ref["coef"])
    close(out["anchors"].double().sum(0), ref["priors_sum"], atol=1e-3, rtol=1e-5)
    close(out["boxes"][0].double().sum(0), ref["loc_sum"], atol=1e-2, rtol=1e-5)
    close(probs.double().sum(0), ref["conf_sum"], atol=1e-3, rtol=1e-5)
    close(out["coefs"][0].double().sum(0), ref["coef_sum"], atol=1e-2, rtol=1e-5)
    proto = out["prototypes"][0].permute(1, 2, 0)  # official layout (h, w, k)
    assert tuple(proto.shape) == tuple(ref["proto_shape"])
    ps, ss = int(ref["proto_stride"]), int(ref["segm_stride"])
    close(proto[::ps, ::ps], ref["proto_sample"])
    close(proto.double().sum((0, 1)), ref["proto_sum"], atol=1e-2, rtol=1e-5)
    assert tuple(semantic.shape) == tuple(ref["segm_shape"])
    close(semantic[:, ::ss, ::ss], ref["segm_sample"])
    close(semantic.double().sum((1, 2)), ref["segm_sum"], atol=1e-2, rtol=1e-5)

    # Detect (decode + Fast NMS): same candidates in the same order
    det = detect_single(out["boxes"][0], probs, out["coefs"][0], out["anchors"])
    assert det["labels"].tolist() == ref["det_class"].tolist()
    close(det["scores"], ref["det_score"])
    close(det["boxes"], ref["det_box_rel"])
    close(det["coefs"], ref["det_coef"])

    # full prediction in original-image coordinates (official: postprocess(dets, w, h))
    (ih, iw), (oh, ow) = manifest["input_size"], [int(v) for v in ref["ori_size"]]
    meta = ImageMeta(image_id=0, ori_shape=(oh, ow), img_shape=(ih, iw), pad_shape=(ih, iw),
                     scale_factor=(iw / ow, ih / oh))
    net.truncate_boxes = True
    with torch.no_grad():
        pred = net(x, [DetSample(meta=meta)], mode="predict")[0].pred
    assert pred.labels.tolist() == ref["post_class"].tolist()
    close(pred.scores, ref["post_box_score"])
    if model.startswith("yolact_plus"):
        close(pred.mask_scores, ref["post_mask_score"])
    else:
        assert pred.mask_scores is None
    box_diff = np.abs(pred.boxes.numpy() - ref["post_box"])
    assert box_diff.max() <= 1 and (box_diff == 0).mean() > 0.99
    assert pred.masks.shape == (len(pred.scores), oh, ow)
    area = pred.masks.flatten(1).sum(1).numpy()
    assert np.abs(area - ref["post_mask_area"]).sum() <= 1e-3 * max(1, ref["post_mask_area"].sum())
    sample = np.unpackbits(ref["post_mask_sample"], axis=-1)[..., : (ow + 7) // 8]
    assert (pred.masks[:, ::8, ::8].numpy() == sample.astype(bool)).mean() > 0.999
