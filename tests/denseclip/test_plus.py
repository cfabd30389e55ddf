"""MaskCLIP+: DeepLab heads, the text classifier, pseudo-labels (CLIP-guided, then self-training), zero-shot
labels, prediction at the original size; on a tiny seeded open_clip CLIP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from denseclip.maskclip import MaskCLIP, cosine_logits
from denseclip.plus.heads import ASPPv2, DeepLabV3PlusHead, DilatedResNet, TextClassifier
from denseclip.plus.model import MaskCLIPPlus, assign_labels, predict_at_original
from forge.data.semseg.sample import SegSample
from forge.data.structures import ImageMeta
from forge.models.preprocessor import ImagePreprocessor

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def _teacher(num_classes=5, seed=0):
    torch.manual_seed(seed)
    clip = CLIP(embed_dim=32, vision_cfg=dict(layers=2, width=32, patch_size=16, image_size=64, head_width=16),
                text_cfg=dict(context_length=8, vocab_size=100, width=32, heads=2, layers=1)).eval()
    return MaskCLIP(clip, F.normalize(torch.randn(num_classes, 32), dim=-1))


def _plus(**kw):
    kw.setdefault("backbone_layers", (1, 1, 1, 1))
    kw.setdefault("width_scale", 0.125)
    return MaskCLIPPlus(_teacher(), data_preprocessor=ImagePreprocessor(mean=MEAN, std=STD), **kw)


def _samples(gt, **meta):
    return [SegSample(meta=ImageMeta(image_id=i, **meta), gt_sem_seg=g) for i, g in enumerate(gt)]


def test_dilated_resnet_output_stride_8():
    net = DilatedResNet((1, 1, 1, 1), width_scale=0.125).eval()
    c1, c4 = net(torch.randn(1, 3, 64, 96))
    assert c1.shape[-2:] == (16, 24) and c4.shape[-2:] == (8, 12) and c4.shape[1] == net.out_channels == 256
    # the first block of a dilated stage keeps the previous dilation (mmseg's contract_dilation, torchvision alike)
    net = DilatedResNet((1, 1, 2, 2), width_scale=0.125)
    assert net.layer3[0].conv2.dilation == (1, 1) and net.layer3[1].conv2.dilation == (2, 2)
    assert net.layer4[0].conv2.dilation == (2, 2) and net.layer4[1].conv2.dilation == (4, 4)
    assert net.layer3[0].conv2.stride == (1, 1) and net.layer4[0].conv2.stride == (1, 1)


def test_aspp_v2_sums_its_dilated_branches():
    aspp = ASPPv2(16, 8, (1, 6, 12)).eval()
    x = torch.randn(2, 16, 10, 10)
    ref = sum(b(x) for b in aspp.branches)
    torch.testing.assert_close(aspp(None, x), ref)
    assert aspp.branches[0][0].kernel_size == (1, 1) and aspp.branches[2][0].dilation == (12, 12)
    head = DeepLabV3PlusHead(16, 8, (1, 12), c1_in_channels=4, c1_channels=6).eval()
    assert head(torch.randn(2, 4, 20, 20), x).shape == (2, 8, 20, 20)


def test_text_classifier_is_the_frozen_embedding():
    emb = F.normalize(torch.randn(3, 8), dim=-1)
    cls = TextClassifier(emb)
    feat = torch.randn(2, 8, 4, 5)
    torch.testing.assert_close(cls(feat), torch.einsum("bdhw,cd->bchw", feat, emb))
    assert not any(p.requires_grad for p in cls.parameters())
    bg = TextClassifier(emb, cls_bg=True)
    out = bg(feat)
    assert out.shape[1] == 4
    torch.testing.assert_close(out[:, 0], torch.einsum("bdhw,d->bhw", feat, F.normalize(bg.bg_embedding[0], dim=0)))


def test_assign_labels_fills_only_unlabelled_pixels_with_unlabelled_classes():
    gt = torch.tensor([[[-1, 0, 255], [-1, -1, 3]]])
    logits = torch.zeros(1, 2, 2, 3)  # over classes [2, 4]; class 4 wins at (0, 0) and (1, 1)
    logits[0, 1, 0, 0] = logits[0, 1, 1, 1] = 1.0
    out = assign_labels(gt, logits, torch.tensor([2, 4]))
    assert out.tolist() == [[[4, 0, 255], [2, 4, 3]]]


def test_clip_guided_then_self_training():
    model = _plus(self_train_start=3).train()
    x = torch.randn(2, 3, 64, 64)
    gt = torch.full((2, 64, 64), -1, dtype=torch.long)
    gt[:, :8] = 255
    # step 1: labels = MaskCLIP's argmax over all classes at the unlabelled pixels
    model.step.fill_(1)
    logits, feat = model._forward(x)
    labels = model.pseudo_labels(x, feat, gt)
    t = model.teacher
    ref_logits = cosine_logits(t.dense_features(t.normalize(x * model.data_preprocessor.std
                                                            + model.data_preprocessor.mean))[0], t.text_embeddings)
    ref = F.interpolate(ref_logits, size=(64, 64), mode="bilinear", align_corners=False).argmax(1)
    assert (labels[:, :8] == 255).all()
    assert torch.equal(labels[:, 8:], ref[:, 8:])
    # step 3: the student's own features against the text embeddings
    model.step.fill_(3)
    labels = model.pseudo_labels(x, feat, gt)
    own = torch.einsum("bdhw,cd->bchw", feat, model.classifier.text_embeddings)
    own = F.interpolate(own, size=(64, 64), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(labels[:, 8:], own[:, 8:])


def test_loss_trains_the_student_only_and_counts_steps():
    model = _plus(self_train_start=2).train()
    x = torch.randn(2, 3, 64, 64)
    gt = torch.full((2, 64, 64), -1, dtype=torch.long)
    losses = model.loss(x, _samples(gt))
    losses["loss_ce"].backward()
    assert int(model.step) == 1 and torch.isfinite(losses["loss_ce"])
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.backbone.stem[0].weight.grad is not None
    assert not model.teacher.training
    with pytest.raises(ValueError, match="gt_sem_seg"):
        model.loss(x, [SegSample(meta=ImageMeta(image_id=0))])


def test_zero_shot_keeps_seen_ground_truth_and_labels_unseen_among_unseen():
    model = _plus(unlabeled_classes=[1, 3]).train()
    x = torch.randn(1, 3, 64, 64)
    gt = torch.zeros(1, 64, 64, dtype=torch.long)
    gt[:, 32:] = -1
    gt[:, :16] = 4
    logits, feat = model._forward(x)
    labels = model.pseudo_labels(x, feat, gt)
    assert (labels[:, :16] == 4).all() and (labels[:, 16:32] == 0).all()
    assert set(labels[:, 32:].unique().tolist()) <= {1, 3}
    with pytest.raises(ValueError, match="unlabeled_classes"):
        _plus(unlabeled_classes=[5])


def test_predict_resizes_to_the_original_and_unflips():
    logits = torch.zeros(1, 2, 8, 8)
    logits[0, 1, :, :2] = 1.0  # class 1 on the left quarter of the unpadded 8x6 part
    meta = ImageMeta(image_id=0, ori_shape=(16, 12), img_shape=(8, 6), flip=False)
    pred = predict_at_original(logits, [SegSample(meta=meta)])[0]
    assert pred.shape == (16, 12) and (pred[:, :3] == 1).all() and (pred[:, 5:] == 0).all()
    meta.flip = True
    pred = predict_at_original(logits, [SegSample(meta=meta)])[0]
    assert (pred[:, -3:] == 1).all() and (pred[:, :7] == 0).all()
    model = _plus().eval()
    out = model(torch.randn(1, 3, 64, 64), [SegSample(meta=ImageMeta(image_id=0, ori_shape=(100, 90),
                                                                     img_shape=(64, 60)),
                                                      ori_gt_sem_seg=torch.zeros(100, 90, dtype=torch.long))],
                mode="predict")
    assert out[0]["pred_sem_seg"].shape == (100, 90) and out[0]["gt_sem_seg"].shape == (100, 90)


def test_needs_a_normalising_preprocessor():
    with pytest.raises(ValueError, match="mean and std"):
        MaskCLIPPlus(_teacher(), backbone_layers=(1, 1, 1, 1), width_scale=0.125)
    with pytest.raises(ValueError, match="decoder"):
        _plus(decoder="fcn")
