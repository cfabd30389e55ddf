"""The NOH-NMS pedestrian detector as an mmengine model: torchvision's Faster R-CNN FPN stages
(:mod:`nohnms.heads`) around a ResNet-FPN backbone (:mod:`nohnms.backbone`), with the Nearby Objects Hallucinator
and a choice of NMS (``nms: greedy | noh``) applied to the same candidates.

``forward(inputs, data_samples, mode)``: ``'loss'`` -> dict of named losses; ``'predict'`` -> list of
:class:`~forge.data.structures.DetSample` whose ``pred`` is a :class:`NohDetections` in original-image coordinates
(the CrowdHuman evaluator reads its boxes and scores); ``'tensor'`` -> the pre-NMS candidates per image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import AnchorGenerator, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from forge.config import ConfigError
from forge.data.structures import Detections, DetSample, ImageMeta
from forge.ops import standard_nms
from forge.precision import float32_region

from .backbone import BACKBONE_REQUIRED, BACKBONE_SCRATCH, build_resnet_fpn, load_imagenet, missing_backbone_message
from .heads import CrowdRPN, HallucinatorRoIHeads, OverlapPredictor

__all__ = ["NMS_KINDS", "NohDetections", "NohNmsRCNN", "apply_nms"]

NMS_KINDS = ("greedy", "noh")


@dataclass
class NohDetections(Detections):
    """:class:`Detections` plus, per kept box, its hallucinated neighbour: ``overlap_boxes (N, 4)`` xyxy in the same
    coordinates and ``overlap_probs (N,)`` (zeros for a detector without a hallucinator)."""

    overlap_boxes: Tensor | None = None
    overlap_probs: Tensor | None = None

    def to(self, device: torch.device | str) -> NohDetections:
        base = super().to(device)
        return replace(base, overlap_boxes=None if self.overlap_boxes is None else self.overlap_boxes.to(device),
                       overlap_probs=None if self.overlap_probs is None else self.overlap_probs.to(device))


def apply_nms(cand: dict[str, Tensor], nms: str, iou_threshold: float = 0.5, score_threshold: float = 0.01,
              max_det: int | None = 200) -> tuple[Tensor, Tensor]:
    """``(keep, scores)`` of one image's candidates (``boxes, scores, overlap_boxes, overlap_probs``) under
    ``nms``: ``'greedy'`` (``forge.ops.standard_nms``, IoU ``> iou_threshold`` suppresses) or ``'noh'``
    (``forge.ops.nms.noh_nms``, the public code's rescoring; ``score_threshold`` drops eased boxes as it goes).
    ``keep`` indexes the candidates, sorted by the final score, at most ``max_det``."""
    boxes, scores = cand["boxes"], cand["scores"]
    if nms == "greedy":
        keep, _, new = standard_nms(boxes, scores[:, None], iou_threshold=iou_threshold, score_threshold=None,
                                    top_k=None, max_det=max_det)
        return keep, new
    if nms == "noh":
        from forge.ops import nms as nms_ops

        noh = getattr(nms_ops, "noh_nms", None)
        if noh is None:
            raise ConfigError("model.nms=noh needs forge.ops.nms.noh_nms, which this installation lacks")
        keep, new = noh(boxes, scores, cand["overlap_boxes"], cand["overlap_probs"], iou_threshold=iou_threshold,
                        score_threshold=score_threshold)
        return keep[:max_det], new[:max_det]
    raise ConfigError(f"model.nms must be one of {NMS_KINDS}, got {nms!r}")


class NohNmsRCNN(BaseModel):
    """Faster R-CNN ResNet-FPN for one class with the Nearby Objects Hallucinator (NOH-NMS, Zhou et al. 2020).

    Args:
        backbone: ``resnet18 | resnet34 | resnet50 | resnet101``.
        num_classes: foreground classes (1, person).
        backbone_checkpoint: torchvision ImageNet weights file, ``'required'`` (paper rows: training stops at once,
            naming the file) or ``'scratch'``.
        backbone_norm: ``frozen_bn`` (detectron2's ``FrozenBN``, ImageNet statistics) or ``bn``.
        trainable_layers: ResNet stages trained (3: stem and ``layer1`` frozen, detectron2's ``FREEZE_AT 2``).
        fpn_norm: ``bn`` (the public config's ``FPN.NORM``) or None.
        fpn_channels: FPN width.
        anchor_sizes: one anchor size per level (P2-P6).
        aspect_ratios: height / width of the anchors (1, 2, 3: upright people).
        rpn_*: RPN options (torchvision's names; ``rpn_ignore_ioa`` see :class:`~nohnms.heads.CrowdRPN`).
        roi_*: second-stage sampling (512 RoIs per image, 50% positive: the public config's
            ``ROI_HEADS.POSITIVE_FRACTION``), ``roi_ignore_ioa`` the IoA rule.
        representation_size: width of the two-layer box heads (1024).
        hallucinator: add the Nearby Objects Hallucinator (required for ``nms: noh``).
        overlap_iou_threshold, prob_loss_beta, smooth_l1_beta: loss settings (public config 0.4, 0.02, 1.0).
        score_thresh: candidates kept before NMS (0.05).
        nms: ``greedy`` | ``noh``; nms_iou: its IoU threshold (0.5); noh_score_threshold: NOH-NMS's drop threshold.
        max_det: detections per image (200).
        size_divisor: inputs are padded bottom-right to a multiple of it (the FPN's coarsest stride).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 1,
        backbone_checkpoint: str | None = BACKBONE_REQUIRED,
        backbone_norm: str = "frozen_bn",
        trainable_layers: int = 3,
        fpn_norm: str | None = "bn",
        fpn_channels: int = 256,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (1.0, 2.0, 3.0),
        rpn_pre_nms_top_n_train: int = 12000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 6000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_min_size: float = 2.0,
        rpn_top_k_all_levels: bool = True,
        rpn_ignore_ioa: float | None = None,
        roi_batch_size_per_image: int = 512,
        roi_positive_fraction: float = 0.5,
        roi_fg_iou_thresh: float = 0.5,
        roi_bg_iou_thresh: float = 0.5,
        roi_ignore_ioa: float | None = 0.5,
        representation_size: int = 1024,
        hallucinator: bool = True,
        overlap_iou_threshold: float = 0.4,
        prob_loss_beta: float = 0.02,
        smooth_l1_beta: float = 1.0,
        score_thresh: float = 0.05,
        nms: str = "noh",
        nms_iou: float = 0.5,
        noh_score_threshold: float = 0.01,
        max_det: int = 200,
        size_divisor: int = 32,
        data_preprocessor: dict | torch.nn.Module | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if nms not in NMS_KINDS:
            raise ConfigError(f"model.nms must be one of {NMS_KINDS}, got {nms!r}")
        if nms == "noh" and not hallucinator:
            raise ConfigError("model.nms=noh needs the hallucinator's predictions: set model.hallucinator=true")
        if backbone_checkpoint is not None and not isinstance(backbone_checkpoint, str):
            raise ConfigError(f"model.backbone_checkpoint must be a file, {BACKBONE_REQUIRED!r} or "
                              f"{BACKBONE_SCRATCH!r}, got {backbone_checkpoint!r}")
        self.backbone_name = backbone
        self.backbone_checkpoint = backbone_checkpoint
        self.num_classes = int(num_classes)
        self.nms, self.nms_iou, self.noh_score_threshold = nms, float(nms_iou), float(noh_score_threshold)
        self.max_det = int(max_det)
        self.size_divisor = int(size_divisor)
        self.backbone = build_resnet_fpn(backbone, backbone_norm, trainable_layers, fpn_norm, fpn_channels)
        levels = len(anchor_sizes)
        anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes),
                                  (tuple(float(r) for r in aspect_ratios),) * levels)
        self.rpn = CrowdRPN(
            anchors, RPNHead(fpn_channels, len(aspect_ratios)), rpn_fg_iou_thresh, rpn_bg_iou_thresh,
            rpn_batch_size_per_image, rpn_positive_fraction,
            dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
            dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test), rpn_nms_thresh,
            top_k_all_levels=rpn_top_k_all_levels, ignore_ioa=rpn_ignore_ioa, smooth_l1_beta=smooth_l1_beta)
        self.rpn.min_size = float(rpn_min_size)
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

        pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=0)
        feat = fpn_channels * 7 * 7
        overlap_head = TwoMLPHead(feat, representation_size) if hallucinator else None
        overlap_pred = OverlapPredictor(representation_size) if hallucinator else None
        self.roi_heads = HallucinatorRoIHeads(
            pool, TwoMLPHead(feat, representation_size), FastRCNNPredictor(representation_size, num_classes + 1),
            roi_fg_iou_thresh, roi_bg_iou_thresh, roi_batch_size_per_image, roi_positive_fraction, None,
            score_thresh, nms_iou, max_det, overlap_head=overlap_head, overlap_predictor=overlap_pred,
            ignore_ioa=roi_ignore_ioa, smooth_l1_beta=smooth_l1_beta, overlap_iou_threshold=overlap_iou_threshold,
            prob_loss_beta=prob_loss_beta)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """The runner calls it before training: ImageNet weights into the backbone; raises, naming the file to get
        and the override, while ``backbone_checkpoint`` is ``'required'``."""
        if self.backbone_checkpoint == BACKBONE_REQUIRED:
            raise ConfigError(f"NohNmsRCNN ({self.backbone_name}): {missing_backbone_message(self.backbone_name)} "
                              "(this attempt left only its config and log in the work dir: add overwrite=true)")
        if self.backbone_checkpoint in (None, BACKBONE_SCRATCH):
            if any(type(m).__name__ == "FrozenBatchNorm2d" for m in self.backbone.modules()):
                print_log("NohNmsRCNN: a frozen-BN backbone from random weights keeps its initial statistics; "
                          "set model.backbone_norm=bn to train it from scratch", logger="current",
                          level=logging.WARNING)
            return
        load_imagenet(self.backbone, self.backbone_checkpoint)

    # ------------------------------------------------------------------ network
    def _pad(self, inputs: Tensor) -> Tensor:
        h, w = inputs.shape[-2:]
        d = self.size_divisor
        ph, pw = (-h) % d, (-w) % d
        return F.pad(inputs, (0, pw, 0, ph)) if ph or pw else inputs  # 0 = the mean colour after normalising

    @staticmethod
    def _image_sizes(inputs: Tensor, data_samples: Sequence[DetSample] | None) -> list[tuple[int, int]]:
        if data_samples is None:
            return [tuple(inputs.shape[-2:])] * inputs.shape[0]
        return [tuple(int(v) for v in (s.meta.img_shape if s.meta.img_shape[0] > 0 else inputs.shape[-2:]))
                for s in data_samples]

    @staticmethod
    def targets(data_samples: Sequence[DetSample], device: torch.device) -> list[dict[str, Tensor]]:
        """torchvision targets: persons (``labels`` 1) and the ignore regions (``gt.iscrowd``) apart."""
        out = []
        for s in data_samples:
            if s.gt is None:
                raise ValueError(f"NohNmsRCNN: image {s.meta.image_id} ({s.meta.file_name}) has no ground truth")
            ign = s.gt.iscrowd.bool() if s.gt.iscrowd is not None else torch.zeros(len(s.gt), dtype=torch.bool)
            boxes = s.gt.boxes.float().reshape(-1, 4).to(device)
            ign = ign.to(device)
            out.append(dict(boxes=boxes[~ign], labels=s.gt.labels.to(device)[~ign] + 1, ignore=boxes[ign]))
        return out

    def forward(self, inputs: Tensor | Sequence[Tensor], data_samples: Sequence[DetSample] | None = None,
                mode: str = "tensor"):
        if not isinstance(inputs, Tensor):
            inputs = torch.stack(list(inputs))
        sizes = self._image_sizes(inputs, data_samples)
        x = self._pad(inputs)
        images = ImageList(x, sizes)
        if mode == "loss":
            if data_samples is None:
                raise ValueError("NohNmsRCNN.forward(mode='loss') needs data_samples with gt")
            targets = self.targets(data_samples, x.device)
            feats = self.backbone(x)
            with float32_region(x.device.type):
                feats = {k: v.float() for k, v in feats.items()}
                proposals, rpn_losses = self.rpn(images, feats, targets)
                _, roi_losses = self.roi_heads(feats, proposals, sizes, targets)
            return {**rpn_losses, **roi_losses}
        if mode in ("tensor", "predict"):
            with torch.no_grad():
                feats = self.backbone(x)
                with float32_region(x.device.type):
                    feats = {k: v.float() for k, v in feats.items()}
                    proposals, _ = self.rpn(images, feats)
                    cands, _ = self.roi_heads(feats, proposals, sizes)
            return cands if mode == "tensor" else self.postprocess(cands, inputs, data_samples)
        raise ValueError(f"NohNmsRCNN.forward: unknown mode {mode!r} (tensor, loss, predict)")

    def postprocess(self, cands: list[dict[str, Tensor]], inputs: Tensor,
                    data_samples: Sequence[DetSample] | None, nms: str | None = None) -> list[DetSample]:
        """NMS on each image's candidates, then boxes back to original-image pixels."""
        ih, iw = inputs.shape[-2:]
        if data_samples is None:
            data_samples = [DetSample(meta=ImageMeta(image_id=i, ori_shape=(ih, iw), img_shape=(ih, iw),
                                                     pad_shape=(ih, iw))) for i in range(inputs.shape[0])]
        results = []
        for cand, sample in zip(cands, data_samples, strict=True):
            keep, scores = apply_nms(cand, nms or self.nms, self.nms_iou, self.noh_score_threshold, self.max_det)
            pred = self.to_original(cand, keep, scores, sample.meta)
            results.append(DetSample(meta=sample.meta, gt=sample.gt, pred=pred))
        return results

    @staticmethod
    def to_original(cand: dict[str, Tensor], keep: Tensor, scores: Tensor, meta: ImageMeta) -> NohDetections:
        """Kept candidates in ``meta.ori_shape`` pixels (undoing the resize and, if any, the flip)."""
        sx, sy = (float(v) for v in meta.scale_factor)
        scale = torch.tensor([sx, sy, sx, sy], device=scores.device)
        oh, ow = (int(v) for v in meta.ori_shape)

        def back(b: Tensor) -> Tensor:
            b = b / scale
            if meta.flip:
                b = torch.stack([ow - b[:, 2], b[:, 1], ow - b[:, 0], b[:, 3]], dim=1)
            if oh > 0 and ow > 0:
                b = torch.stack([b[:, 0].clamp(0, ow), b[:, 1].clamp(0, oh), b[:, 2].clamp(0, ow),
                                 b[:, 3].clamp(0, oh)], dim=1)
            return b

        return NohDetections(boxes=back(cand["boxes"][keep]).cpu(), scores=scores.float().cpu(),
                             labels=cand["labels"][keep].cpu(), overlap_boxes=back(cand["overlap_boxes"][keep]).cpu(),
                             overlap_probs=cand["overlap_probs"][keep].cpu())
