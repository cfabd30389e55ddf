"""The shapes demo's pieces: colour + shape vocabulary and its split, the COCO instance set written from the
coloured scenes, the SAM-sized CLIP2SAM (prompt encoder and one-token decoder from a SAM), the config builders and
the validation feature MSE."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
import torch.nn.functional as F

from denseclip import build_clip
from denseclip.clip_loading import save_clip
from edgesam import CheckpointError
from edgesam.distill.builders import sam_model, vit_encoder
from edgesam.distill.teacher import Teacher
from forge.data.semseg.synthetic import COLOURS, render_scene
from ovsam import CLIP2SAM, clip_backbone
from ovsam.checkpoint import init_from_sam, sam_decoder_state
from ovsam.metric import FeatureMSEMetric
from ovsam.shapes import (
    clip2sam_trainer,
    colour_shape_classes,
    sam2clip_distiller,
    scene_instances,
    split_vocabulary,
    write_instance_split,
)

from .tiny import TINY_RN

SIZE = 64


def _sam(prompt_dim: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    enc = vit_encoder(img_size=SIZE, embed_dim=32, depth=2, num_heads=2, window_size=2, global_attn_indexes=(1,),
                      out_chans=prompt_dim)
    return sam_model(enc, prompt_dim=prompt_dim, decoder_heads=2, decoder_mlp_dim=48, iou_head_hidden_dim=16)


def _clip_file(tmp_path) -> str:
    torch.manual_seed(0)
    cfg = dict(TINY_RN, vision_cfg=dict(TINY_RN["vision_cfg"], image_size=SIZE))
    path = str(tmp_path / "clip.pt")
    save_clip(build_clip(cfg, quick_gelu=False), path)
    return path


def test_vocabulary_and_split():
    classes = colour_shape_classes()
    assert len(classes) == 30 == len(set(classes)) and classes[0] == "red circle"
    base, novel = split_vocabulary(classes, ["orange", "cross"])
    assert len(novel) == 5 + 6 - 1 and len(base) == 20 and not set(base) & set(novel)
    assert all("orange" in c or "cross" in c for c in novel) and "orange cross" in novel
    with pytest.raises(ValueError, match="pink"):
        split_vocabulary(classes, ["pink"])


def test_scene_instances_are_the_coloured_regions():
    for i in range(6):
        img, insts = scene_instances(5, i, SIZE, min_pixels=0)
        ref_img, labels, caption = render_scene(np.random.default_rng([5, i]), SIZE)
        assert np.array_equal(img, ref_img)
        assert sorted(n for n, _ in insts) == sorted(p[2:] for p in caption.split(" and "))
        union = np.zeros_like(labels, dtype=bool)
        for name, mask in insts:
            colour = np.asarray(COLOURS[name.split()[0]], np.float32)
            # painted colour +- 15 per channel, then pixel noise of std 6
            assert np.abs(img[mask].astype(np.float32).mean(0) - colour).max() < 20
            assert not (union & mask).any()
            union |= mask
        assert np.array_equal(union, labels != 255)


def test_instance_split_holds_only_its_classes(tmp_path):
    from forge.data.coco_dataset import CocoInstanceDataset

    classes = colour_shape_classes()
    base, _ = split_vocabulary(classes, ["orange", "cross"])
    ann = write_instance_split(str(tmp_path), "train", 12, SIZE, 7, base)
    data = json.load(open(ann))
    assert [c["name"] for c in data["categories"]] == base
    expected = [(i, n, m) for i in range(12) for n, m in scene_instances(7, i, SIZE)[1] if n in base]
    assert len(data["annotations"]) == len(expected)
    for a, (i, name, mask) in zip(data["annotations"], expected):
        assert a["image_id"] == i + 1 and base[a["category_id"] - 1] == name
        assert np.array_equal(mask_utils.decode(a["segmentation"]).astype(bool), mask)
        ys, xs = np.nonzero(mask)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    ds = CocoInstanceDataset(ann, str(tmp_path / "train"), pipeline=[], classes=base, filter_empty=True)
    item = ds[0]
    assert item["inputs"].shape == (3, SIZE, SIZE) and item["data_samples"].gt.masks.shape[-2:] == (SIZE, SIZE)


def test_clip2sam_defaults_are_sams_sizes():
    model = CLIP2SAM(clip_backbone(TINY_RN), embed_dim=64, input_size=256,
                     sam2clip_kwargs=dict(num_heads=4, depth=2, global_attn_indexes=(1,)))
    layer = model.mask_decoder.mask_decoder.transformer.layers[0]
    assert (model.pe.embed_dim, layer.self_attn.num_heads, layer.mlp.lin1.out_features) == (256, 8, 2048)
    assert model.neck.neck[0].out_channels == 256
    with pytest.raises(ValueError, match="out_chans"):
        CLIP2SAM(clip_backbone(TINY_RN), embed_dim=64, input_size=256, prompt_dim=32,
                 sam2clip_kwargs=dict(out_chans=64))


def test_init_from_sam_takes_prompt_encoder_and_first_mask_token():
    sam = _sam()
    model = CLIP2SAM(clip_backbone(TINY_RN), embed_dim=32, input_size=SIZE, fpn_channels=16, prompt_dim=32,
                     decoder_heads=2, decoder_mlp_dim=48, sam2clip_kwargs=dict(num_heads=2, depth=1))
    init_from_sam(model, sam)
    for k, v in sam.prompt_encoder.state_dict().items():
        assert torch.equal(model.pe.state_dict()[k], v)
    dec, ref = model.mask_decoder.mask_decoder, sam.mask_decoder
    assert torch.equal(dec.mask_tokens.weight, ref.mask_tokens.weight[:1])
    assert torch.equal(dec.output_hypernetworks_mlps[0].layers[0].weight,
                       ref.output_hypernetworks_mlps[0].layers[0].weight)
    assert torch.equal(dec.transformer.final_attn_token_to_image.q_proj.weight,
                       ref.transformer.final_attn_token_to_image.q_proj.weight)
    cut = sam_decoder_state(ref.state_dict())
    assert not any(k.startswith(("iou_", "output_hypernetworks_mlps.1")) for k in cut)
    with pytest.raises(CheckpointError, match="pe"):
        init_from_sam(model, _sam(prompt_dim=16))


def test_feature_mse_metric_matches_the_formula(tmp_path):
    torch.manual_seed(0)
    distiller = sam2clip_distiller(_clip_file(tmp_path), Teacher(_sam()), depth=2, num_heads=2, window_size=2,
                                   global_attn_indexes=(1,)).eval()
    student = distiller.student.neck_student
    assert torch.equal(student.pos_embed, distiller.teacher.sam.image_encoder.pos_embed)
    x = torch.randn(5, 3, SIZE, SIZE)
    records = distiller(x, [None] * 5, mode="predict")
    metric = FeatureMSEMetric()
    metric.process(None, records[:2])
    metric.process(None, records[2:])
    out = metric.compute_metrics(metric.results)
    with torch.no_grad():
        pred, target = distiller(x, mode="tensor"), distiller.teacher.sam.image_encoder(x)
    assert out["mse"] == pytest.approx(float(F.mse_loss(pred, target)), rel=1e-5)
    assert out["mse_mean_embedding"] == pytest.approx(float(target.var(0, unbiased=False).mean()), rel=1e-4)


def test_clip2sam_trainer_from_a_distillation_run(tmp_path):
    clip = _clip_file(tmp_path)
    teacher = Teacher(_sam())
    distiller = sam2clip_distiller(clip, teacher, depth=2, num_heads=2, window_size=2, global_attn_indexes=(1,))
    with torch.no_grad():
        for p in distiller.student.neck_student.parameters():
            p.add_(0.01)
    torch.save({"state_dict": distiller.state_dict(), "meta": {}}, tmp_path / "s2c.pth")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(dict(categories=[dict(id=2, name="red star"), dict(id=1, name="blue circle")])))
    trainer = clip2sam_trainer(clip, str(tmp_path / "s2c.pth"), teacher, str(ann), num_prompts=4, num_points=32)
    assert trainer.classifier.shape == (2, 32)
    own, ref = trainer.model.neck.state_dict(), distiller.student.neck_student.state_dict()
    assert own.keys() == ref.keys() and all(torch.equal(own[k], ref[k]) for k in ref)
    assert trainer.model.neck.blocks[0].window_size == 2 and trainer.model.neck.blocks[1].window_size == 0
    masks = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    masks[0, 10:40, 5:30] = True
    from forge.data.structures import DetSample, ImageMeta, Instances

    sample = DetSample(meta=ImageMeta(image_id=0, img_shape=(SIZE, SIZE)),
                       gt=Instances(boxes=torch.tensor([[5.0, 10, 30, 40]]), labels=torch.tensor([1]), masks=masks))
    losses = trainer(torch.randn(1, 3, SIZE, SIZE), [sample], mode="loss")
    assert set(losses) == {"loss_cls", "loss_mask", "loss_dice"} and all(torch.isfinite(v) for v in losses.values())
