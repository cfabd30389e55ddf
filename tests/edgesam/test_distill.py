"""EdgeSAM's training models on a tiny SAM: losses flow where they should (student encoder / decoder, never the
teacher or the frozen prompt encoder), a student equal to its teacher has zero embedding loss and no refinement
points, the teacher stays out of checkpoints, phase 2 starts from a phase-1 checkpoint, cached embeddings = live."""

from __future__ import annotations

import copy

import pytest
import torch

import edgesam.distill.models as models
from edgesam.distill import (
    EncoderDistiller,
    PromptDistiller,
    SamEmbedder,
    SamPromptTrainer,
    Teacher,
    TeacherAgreementMetric,
    repvit_encoder,
    sam_model,
    vit_encoder,
)
from edgesam.distill.prompting import decode, sample_prompts
from forge.data.structures import DetSample, ImageMeta, Instances

SIZE = 64


def tiny_sam(seed: int = 0):
    torch.manual_seed(seed)
    enc = vit_encoder(img_size=SIZE, embed_dim=32, depth=2, num_heads=2, window_size=2, global_attn_indexes=[1],
                      out_chans=32)
    return sam_model(enc, prompt_dim=32, decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32)


def tiny_student(seed: int = 1):
    torch.manual_seed(seed)
    return repvit_encoder(SIZE, [[8, "SN"], [16, "DN"], [16, "DN"], [32, "DN"]], out_chans=32)


def batch(seed: int = 0, n_images: int = 2, sizes=((64, 64), (48, 64))):
    g = torch.Generator().manual_seed(seed)
    samples, images = [], torch.zeros(n_images, 3, SIZE, SIZE, dtype=torch.uint8)
    for i in range(n_images):
        h, w = sizes[i]
        masks, boxes = [], []
        for _ in range(3):
            x0, y0 = int(torch.randint(0, w - 20, (1,), generator=g)), int(torch.randint(0, h - 20, (1,), generator=g))
            x1, y1 = x0 + 12 + int(torch.randint(0, 8, (1,), generator=g)), y0 + 12
            m = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            m[y0:y1, x0:x1] = True
            masks.append(m)
            boxes.append([x0, y0, x1, y1])
            images[i, :, y0:y1, x0:x1] = torch.randint(0, 255, (3, 1, 1), generator=g, dtype=torch.uint8)
        gt = Instances(boxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor([0, 1, 2]),
                       masks=torch.stack(masks), iscrowd=torch.zeros(3, dtype=torch.bool))
        samples.append(DetSample(meta=ImageMeta(image_id=i + 1, img_shape=(h, w), pad_shape=(SIZE, SIZE)), gt=gt))
    return dict(inputs=images, data_samples=samples)


def _run(model, data, mode):
    data = model.data_preprocessor(data, mode == "loss")
    return model(**data, mode=mode)


def _grads(module):
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()}


def test_sam_prompt_trainer_loss_and_predict():
    model = SamPromptTrainer(tiny_sam(), decode_iters=2)
    losses = _run(model, batch(), "loss")
    assert set(losses) == {"loss_bce_0", "loss_dice_0", "loss_bce_1", "loss_dice_1"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = _grads(model.sam)
    assert any(v for k, v in grads.items() if k.startswith("image_encoder."))
    assert any(v for k, v in grads.items() if k.startswith("mask_decoder."))
    records = _run(model.eval(), batch(), "predict")
    assert [r["pred_masks"].shape for r in records] == [(3, 64, 64), (3, 48, 64)]
    assert all(r["gt_masks"].shape == r["pred_masks"].shape and r["pred_masks"].dtype == torch.bool for r in records)


def test_prompt_sampling_caps_instances_and_pads():
    data = batch()
    prompts = sample_prompts(data["data_samples"], SIZE, "point", max_per_image=2, generator=torch.Generator())
    assert len(prompts) == 4 and prompts.boxes is None and prompts.points[0].shape == (4, 1, 2)
    for (x, y), m in zip(prompts.points[0][:, 0].long().tolist(), prompts.gt_masks):
        assert m[y, x]  # the point lies in its instance's mask
    boxes = sample_prompts(data["data_samples"], SIZE, "box", max_per_image=0)
    assert len(boxes) == 6 and boxes.points is None and boxes.gt_masks.shape == (6, SIZE, SIZE)
    with pytest.raises(ValueError, match="do not fit"):
        sample_prompts(data["data_samples"], 32, "box")


def test_encoder_distiller_identical_student_has_zero_loss_and_teacher_is_not_saved():
    teacher = Teacher(tiny_sam())
    student_enc = copy.deepcopy(teacher.sam.image_encoder)
    model = EncoderDistiller(student_enc, teacher)
    assert _run(model, batch(), "loss")["loss_pixel"].item() == pytest.approx(0.0, abs=1e-10)
    model = EncoderDistiller(tiny_student(), teacher)
    loss = _run(model, batch(), "loss")["loss_pixel"]
    assert loss.item() > 0
    loss.backward()
    grads = _grads(model.student)
    assert any(v for k, v in grads.items() if k.startswith("image_encoder."))
    assert not any(v for k, v in grads.items() if not k.startswith("image_encoder."))
    assert all(p.grad is None for p in teacher.sam.parameters())
    keys = list(model.state_dict())
    assert keys and all(k.startswith("student.") for k in keys)
    assert "teacher" not in dict(model.named_children())
    records = _run(model.eval(), batch(), "predict")
    metric = TeacherAgreementMetric()
    metric.process(None, records)
    assert 0 <= metric.compute_metrics(metric.results)["mIoU"] <= 1


def test_prompt_distiller_from_phase1_checkpoint(tmp_path, monkeypatch):
    teacher = Teacher(tiny_sam())
    phase1 = EncoderDistiller(tiny_student(5), teacher)
    path = tmp_path / "phase1.pth"
    torch.save({"state_dict": phase1.state_dict(), "meta": {}}, path)
    model = PromptDistiller(tiny_student(9), teacher, student_checkpoint=str(path), point_masks=4)
    for k, v in phase1.student.image_encoder.state_dict().items():
        assert torch.equal(model.student.image_encoder.state_dict()[k], v)
    for k, v in teacher.sam.mask_decoder.state_dict().items():  # official INIT_FROM_TEACHER
        assert torch.equal(model.student.mask_decoder.state_dict()[k], v)
    for kind in ("box", "point"):
        monkeypatch.setattr(model, "_kind", lambda kind=kind: kind)
        losses = _run(model, batch(), "loss")
        assert set(losses) == {"loss_bce_0", "loss_dice_0", "loss_bce_1", "loss_dice_1"}
        model.zero_grad()
        sum(losses.values()).backward()
        grads = _grads(model.student)
        assert any(v for k, v in grads.items() if k.startswith("image_encoder."))
        assert any(v for k, v in grads.items() if k.startswith("mask_decoder."))
        assert not any(v for k, v in grads.items() if k.startswith("prompt_encoder."))
        assert all(p.grad is None for p in teacher.sam.parameters())


def test_identical_student_gets_no_refinement_points(monkeypatch):
    teacher = Teacher(tiny_sam())
    model = PromptDistiller(copy.deepcopy(teacher.sam.image_encoder), teacher, point_masks=4)
    seen = []
    original = models.disagreement_points

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(models, "disagreement_points", spy)
    monkeypatch.setattr(model, "_kind", lambda: "point")
    _run(model.eval(), batch(), "loss")  # eval: the same BatchNorm-free ViT as the teacher
    assert len(seen) == 1 and (seen[0][1] == -2).all()
    # a different student disagrees somewhere: at least one real point, labels in {0, 1}
    seen.clear()
    model = PromptDistiller(tiny_student(), teacher, point_masks=4)
    monkeypatch.setattr(model, "_kind", lambda: "box")
    _run(model, batch(), "loss")
    labels = seen[0][1]
    assert labels.shape == (6, 1) and set(labels.unique().tolist()) <= {-2, 0, 1} and (labels >= 0).any()


def test_cached_teacher_equals_live(tmp_path):
    from forge.embedding_cache import EmbeddingCache, teacher_fingerprint

    sam = tiny_sam()
    embedder = SamEmbedder(sam)
    data = batch()
    fp, desc = teacher_fingerprint(embedder)
    cache = EmbeddingCache(tmp_path, fp)
    (tmp_path / fp).mkdir()
    for img, s in zip(data["inputs"], data["data_samples"]):
        h, w = s.meta.img_shape
        emb = embedder([img[:, :h, :w]])[0]
        cache.save(s.meta.image_id, emb)
    cache.write_meta(desc, tuple(emb.shape), "float32")
    live = Teacher(sam)
    cached = Teacher(copy.deepcopy(sam), cache_dir=str(tmp_path))
    model = EncoderDistiller(tiny_student(), live)
    d = model.data_preprocessor(data, False)
    images, _ = model._prepare(d["inputs"], d["data_samples"])
    a, b = live.embeddings(images, d["data_samples"]), cached.embeddings(images, d["data_samples"])
    assert torch.allclose(a, b, atol=1e-5)
    d["data_samples"][0].meta.flip = True
    with pytest.raises(ValueError, match="flipped"):
        cached.embeddings(images, d["data_samples"])


def test_decode_token_selection():
    sam = tiny_sam()
    emb = torch.randn(2, 32, 4, 4)
    boxes = torch.tensor([[1.0, 1, 20, 20], [5, 5, 30, 40]])
    all4, iou4 = decode(sam, emb, None, boxes, 4)
    one, _ = decode(sam, emb, None, boxes, 1)
    three, _ = decode(sam, emb, None, boxes, 3)
    assert all4.shape == (2, 4, 16, 16) and iou4.shape == (2, 4)
    assert torch.equal(one, all4[:, :1]) and torch.equal(three, all4[:, 1:])
    with pytest.raises(ValueError):
        decode(sam, emb, None, boxes, 2)
