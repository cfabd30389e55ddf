"""OVSAM modules: official key/shape manifests, level fusion, forward shapes, checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edgesam import CheckpointError
from ovsam import CLIP2SAM, SAM2CLIP, SAM2CLIPDistill, clip_backbone, load_clip2sam, load_sam2clip
from ovsam.head import map_roi_levels, masks_to_boxes_exclusive, multilevel_roi_align

from .tiny import INPUT, tiny_clip2sam

MANIFEST = json.loads((Path(__file__).parents[1] / "fixtures" / "ovsam" / "official_manifest.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", ["clip2sam_coco_rn50x16", "clip2sam_lvis_rn50x16", "ovsam_coco_rn50x16_point"])
def test_clip2sam_matches_official_manifest(name):
    with torch.device("meta"):
        model = CLIP2SAM(clip_backbone("RN50x16", device="meta"))
    assert _shapes(model) == MANIFEST[name]
    assert len(MANIFEST[name]) == 993


def test_sam2clip_matches_official_manifest():
    with torch.device("meta"):
        model = SAM2CLIPDistill(clip_backbone("RN50x16", device="meta"))
    assert _shapes(model) == MANIFEST["sam2clip_vith_rn50x16"]


def test_level_fusion_shapes_and_encoding():
    torch.manual_seed(0)
    neck = SAM2CLIP((8, 16, 32, 64), embed_dim=32, input_size=256, num_heads=4, depth=2, global_attn_indexes=(1,))
    feats = [torch.randn(2, c, 256 // s, 256 // s) for c, s in zip((8, 16, 32, 64), (4, 8, 16, 32))]
    fused = neck.fuse_levels(feats)
    assert fused.shape == (2, 16, 16, 32)
    # level i: conv (stride 16 / s) or transposed conv (s = 32), then + level_encoding[i]; summed
    ref = 0
    for i, (f, pe) in enumerate(zip(feats, neck.patch_embeds)):
        w, b = pe.projection.weight, pe.projection.bias
        y = F.conv_transpose2d(f, w, b, stride=2) if i == 3 else F.conv2d(f, w, b, stride=16 // (4 * 2 ** i))
        ref = ref + y.permute(0, 2, 3, 1) + neck.level_encoding.weight[i]
    torch.testing.assert_close(fused, ref)
    assert neck(feats).shape == (2, 256, 16, 16)
    with pytest.raises(ValueError, match="4 feature levels"):
        neck.fuse_levels(feats[:3])


def test_roi_levels_and_mask_boxes():
    boxes = torch.tensor([[0, 0, 50, 50], [0, 0, 112, 112], [0, 0, 300, 300], [0, 0, 1000, 1000.]])
    # floor(log2(side / 56)): 50 -> -0.2 -> 0; 112 -> 1; 300 -> 2.42 -> 2; 1000 -> 4.16 -> 3 (clamped)
    assert map_roi_levels(boxes, 4).tolist() == [0, 1, 2, 3]
    m = torch.zeros(2, 8, 8, dtype=torch.bool)
    m[0, 2:5, 1:7] = True
    assert masks_to_boxes_exclusive(m).tolist() == [[1, 2, 7, 5], [0, 0, 0, 0]]
    feats = [torch.arange(16.).view(1, 1, 4, 4).repeat(1, 2, 1, 1) * (lvl + 1) for lvl in range(2)]
    rois = torch.tensor([[0, 0, 0, 4, 4.]])  # level 0 at stride 1: the mean of a 1x1 RoIAlign is the map mean
    out = multilevel_roi_align(feats, rois, (1, 2), output_size=1)
    torch.testing.assert_close(out.flatten(), torch.full((2,), 7.5))


def test_predict_shapes_and_frozen_parts():
    model = tiny_clip2sam()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(p.requires_grad for p in model.neck.parameters())
    assert all(p.requires_grad for p in model.fpn_neck.parameters())
    img = torch.randn(1, 3, INPUT, INPUT)
    classifier = F.normalize(torch.randn(5, 2, 32), dim=-1)
    pred = model.predict(img, classifier, boxes=torch.tensor([[10., 20, 120, 200], [0, 0, 255, 255]]))
    assert pred.low_res_masks.shape == (2, 1, 64, 64)
    assert pred.scores.shape == pred.head_logits.shape == pred.clip_logits.shape == (2, 6)
    assert (pred.head_logits[:, -1] == 0).all()  # zero background embedding
    pts = model.predict(img, classifier, points=torch.tensor([[[50., 60]]]))
    assert pts.scores.shape == (1, 6)
    model.train()
    assert not model.backbone.training and model.mask_decoder.training


def test_checkpoint_roundtrip_and_errors(tmp_path):
    a, b = tiny_clip2sam(0), tiny_clip2sam(1)
    path = tmp_path / "c2s.pth"
    torch.save({"state_dict": a.state_dict(), "meta": {}}, path)
    assert load_clip2sam(b, path) == ["backbone", "fpn_neck", "mask_decoder", "neck", "pe"]
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v)
    # only the trainable parts, as a file may hold
    part = {k: v for k, v in a.state_dict().items() if k.startswith(("fpn_neck.", "mask_decoder."))}
    torch.save(part, path)
    assert load_clip2sam(b, path) == ["fpn_neck", "mask_decoder"]
    torch.save({**part, "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_clip2sam(b, path)
    torch.save({k: v for k, v in part.items() if k != "mask_decoder.label_token.weight"}, path)
    with pytest.raises(CheckpointError, match="label_token"):
        load_clip2sam(b, path)
    # SAM2CLIP files: neck_student.* / backbone_student.* go to neck / backbone
    torch.save({"neck_student." + k: v for k, v in a.neck.state_dict().items()}, path)
    assert load_sam2clip(b, path, into="clip2sam") == ["neck"]
    torch.testing.assert_close(b.neck.pos_embed, a.neck.pos_embed)
    with pytest.raises(CheckpointError, match="belong to no part"):
        torch.save(part, path)
        load_sam2clip(SAM2CLIPDistill(a.backbone, embed_dim=64, input_size=INPUT), path)
