"""SAM2CLIP distillation and CLIP2SAM training steps (mmengine models, as the shared runner calls them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

from edgesam.build import sam_from_encoder
from edgesam.distill.teacher import Teacher
from edgesam.image_encoder import ImageEncoderViT
from forge.data.structures import DetSample, ImageMeta, Instances
from ovsam import SAM2CLIPDistill
from ovsam.train import CLIP2SAMTrainer, SAM2CLIPDistiller

from .tiny import INPUT, tiny_clip2sam


def _sample(i: int, with_masks: bool = True) -> DetSample:
    masks = torch.zeros(2, 200, 240, dtype=torch.bool)
    masks[0, 20:80, 30:120] = True
    masks[1, 100:190, 150:230] = True
    boxes = torch.tensor([[30, 20, 120, 80], [150, 100, 230, 190.]])
    gt = Instances(boxes=boxes, labels=torch.tensor([0, 2]), masks=masks if with_masks else None)
    return DetSample(meta=ImageMeta(image_id=i, img_shape=(200, 240)), gt=gt)


def _batch(n: int, with_masks: bool = True) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"inputs": [torch.randint(0, 255, (3, 200, 240), generator=g, dtype=torch.uint8) for _ in range(n)],
            "data_samples": [_sample(i, with_masks) for i in range(n)]}


def test_clip2sam_step_trains_only_the_head():
    torch.manual_seed(0)
    model = tiny_clip2sam()
    cls = F.normalize(torch.randn(3, 32), dim=-1)
    trainer = CLIP2SAMTrainer(model, cls, num_prompts=6, num_points=256)
    trainer.train()
    before = {k: v.clone() for k, v in trainer.state_dict().items()}
    opt = OptimWrapper(torch.optim.SGD([p for p in trainer.parameters() if p.requires_grad], lr=0.1))
    losses = trainer.train_step(_batch(2), opt)
    assert set(losses) == {"loss", "loss_cls", "loss_mask", "loss_dice"}
    assert all(torch.isfinite(v) for v in losses.values())
    after = trainer.state_dict()
    changed = {k.split(".")[1] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"fpn_neck", "mask_decoder"}     # frozen CLIP, SAM2CLIP and prompt encoder stay


def test_image_level_samples_give_classification_only():
    torch.manual_seed(0)
    trainer = CLIP2SAMTrainer(tiny_clip2sam(), F.normalize(torch.randn(3, 32), dim=-1), num_prompts=4,
                              num_points=64)
    data = trainer.data_preprocessor(_batch(2, with_masks=False), True)
    out = trainer(**data, mode="loss")
    assert out["loss_mask"] == 0 and out["loss_dice"] == 0 and out["loss_cls"] > 0


def test_sam2clip_distillation_lowers_feature_error():
    torch.manual_seed(0)
    enc = ImageEncoderViT(img_size=INPUT, embed_dim=32, depth=1, num_heads=2, window_size=4)
    teacher = Teacher(sam_from_encoder(enc, INPUT))
    student = tiny_clip2sam()
    distill = SAM2CLIPDistiller(SAM2CLIPDistill(student.backbone, embed_dim=64, input_size=INPUT, num_heads=4,
                                                depth=1, global_attn_indexes=(0,)), teacher)
    opt = OptimWrapper(torch.optim.Adam([p for p in distill.parameters() if p.requires_grad], lr=3e-3))
    batch = _batch(2)
    first = distill.train_step(batch, opt)["loss_distillation"].item()
    for _ in range(15):
        last = distill.train_step(batch, opt)["loss_distillation"].item()
    assert last < 0.75 * first  # measured: 1.96 -> 1.22 in 16 steps
    assert not any(p.requires_grad for p in distill.student.backbone_student.parameters())
