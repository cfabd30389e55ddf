"""EdgeSAM's optional region-proposal module for single-point prompts (Zhou et al., 2023, Sec. 3.3 "Region proposal
network"): a class-agnostic detector on the (frozen) RepViT encoder's multi-scale features, trained on COCO boxes;
at inference the proposals nearest the click are merged, by score, into a box that is given to SAM with the point.

Ours uses torchvision's FCOS head and loss (an acceptable base per the issue; the paper's choice is an
EfficientDet-style BiFPN head, whose code and weights were not released) on an FPN over the RepViT stages at strides
8, 16, 32 (96 / 192 / 384 channels) plus two extra levels (P6, P7, as FCOS). ``ProposalNet`` is an mmengine model
for the shared runner (``forge-train experiment=edgesam/rpn_coco``); ``ProposalRecall`` its class-agnostic metric;
``merge_proposals`` and ``point_prompt_with_proposals`` the inference side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch import Tensor, nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from edgesam.build import read_checkpoint
from edgesam.predictor import SamPredictor
from edgesam.rep_vit import RepViT
from edgesam.sam import PIXEL_MEAN, PIXEL_STD
from forge.data.structures import Detections, DetSample, ImageMeta
from forge.models import ImagePreprocessor
from forge.ops import box_iou, clip_boxes
from forge.precision import float32_region

LEVELS = ("stage1", "stage2", "stage3")  # strides 8, 16, 32


class _NoBackbone(nn.Module):
    """FCOS wants a backbone with ``out_channels``; ours runs outside it (``ProposalNet.features``)."""

    out_channels = 256


class ProposalNet(BaseModel):
    """Class-agnostic FCOS proposals on RepViT features.

    Args:
        encoder: the RepViT image encoder (EdgeSAM's); ``RepViT()`` if None.
        encoder_checkpoint: an EdgeSAM file (``image_encoder.*`` keys, e.g. ``edge_sam.pth``) or an encoder state dict
            to load into ``encoder`` (strict), or None.
        freeze_encoder: keep the encoder fixed (the paper), BatchNorm statistics included.
        fpn_channels: FPN / head width (256).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: FCOS post-processing (torchvision's).
        data_preprocessor: the normaliser; SAM's mean / std (RGB, 0-255) by default.
    """

    def __init__(self, encoder: RepViT | None = None, encoder_checkpoint: str | None = None,
                 freeze_encoder: bool = True, fpn_channels: int = 256, score_thresh: float = 0.05,
                 nms_thresh: float = 0.6, detections_per_img: int = 100, topk_candidates: int = 1000,
                 data_preprocessor: dict | nn.Module | None = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = ImagePreprocessor(mean=list(PIXEL_MEAN), std=list(PIXEL_STD))
        super().__init__(data_preprocessor=data_preprocessor)
        self.encoder = encoder if encoder is not None else RepViT()
        if encoder_checkpoint is not None:
            state = read_checkpoint(encoder_checkpoint)
            if any(k.startswith("image_encoder.") for k in state):
                state = {k.removeprefix("image_encoder."): v for k, v in state.items() if
                         k.startswith("image_encoder.")}
            self.encoder.load_state_dict(state, strict=True)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        was_training = self.encoder.training
        with torch.no_grad():  # the stage widths, from a tiny forward
            feats = self.encoder.eval().forward_features(torch.zeros(1, 3, 64, 64))
        self.encoder.train(was_training)
        channels = [feats[k].shape[1] for k in LEVELS]
        self.fpn = FeaturePyramidNetwork(channels, fpn_channels, extra_blocks=LastLevelP6P7(fpn_channels,
                                                                                            fpn_channels))
        # one class ("object"); FCOS's anchors (one per location, sizes 8..128 on P3..P7), focal + GIoU + centerness
        _NoBackbone.out_channels = fpn_channels
        self.fcos = FCOS(_NoBackbone(), num_classes=1, score_thresh=score_thresh, nms_thresh=nms_thresh,
                         detections_per_img=detections_per_img, topk_candidates=topk_candidates)
        del self.fcos.backbone, self.fcos.transform  # normalising and resizing are the pipeline's and ours

    def train(self, mode: bool = True) -> ProposalNet:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # frozen BatchNorm statistics
        return self

    def features(self, inputs: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` normalised input (``H``, ``W`` multiples of 32) -> FPN maps P3..P7."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            feats = self.encoder.forward_features(inputs)
        return list(self.fpn({k: feats[k] for k in LEVELS}).values())

    def _anchors(self, inputs: Tensor, feats: list[Tensor]) -> list[Tensor]:
        sizes = [tuple(inputs.shape[-2:])] * inputs.shape[0]
        return self.fcos.anchor_generator(ImageList(inputs, sizes), feats)

    def forward(self, inputs: Tensor | Sequence[Tensor], data_samples: Sequence[DetSample] | None = None,
                mode: str = "tensor"):
        """``'tensor'``: FCOS head outputs; ``'loss'``: ``loss_cls`` (sigmoid focal), ``loss_box`` (GIoU),
        ``loss_ctr`` (centerness BCE) on the GT boxes of every class; ``'predict'``: DetSamples with class-agnostic
        proposals (label 0) in original-image pixels."""
        if not isinstance(inputs, Tensor):
            inputs = torch.stack(list(inputs))
        h, w = inputs.shape[-2:]
        # bottom / right to a multiple of the coarsest stride; 0 is the mean colour after normalisation, as SAM pads
        inputs = nn.functional.pad(inputs, (0, -w % 32, 0, -h % 32))
        feats = self.features(inputs)
        head = self.fcos.head(feats)
        if mode == "tensor":
            return head
        if mode == "loss":
            if data_samples is None or any(s.gt is None for s in data_samples):
                raise ValueError("ProposalNet.forward(mode='loss') needs data_samples with gt boxes")
            targets = [{"boxes": s.gt.boxes.float(), "labels": torch.zeros(len(s.gt.boxes), dtype=torch.long,
                                                                           device=inputs.device)}
                       for s in data_samples]
            with float32_region(inputs.device.type):
                head = {k: v.float() for k, v in head.items()}
                losses = self.fcos.compute_loss(targets, head, self._anchors(inputs, feats),
                                                [f.shape[-2] * f.shape[-1] for f in feats])
            return {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"],
                    "loss_ctr": losses["bbox_ctrness"]}
        if mode == "predict":
            return self._predict(inputs, feats, head, data_samples)
        raise ValueError(f"ProposalNet.forward: unknown mode {mode!r} (tensor, loss, predict)")

    @torch.no_grad()
    def _predict(self, inputs: Tensor, feats: list[Tensor], head: dict[str, Tensor],
                 data_samples: Sequence[DetSample] | None) -> list[DetSample]:
        ih, iw = inputs.shape[-2:]
        if data_samples is None:
            data_samples = [DetSample(meta=ImageMeta(image_id=i, ori_shape=(ih, iw), img_shape=(ih, iw),
                                                     pad_shape=(ih, iw))) for i in range(inputs.shape[0])]
        counts = [f.shape[-2] * f.shape[-1] for f in feats]
        with float32_region(inputs.device.type):
            split = {k: list(v.float().split(counts, dim=1)) for k, v in head.items()}
            anchors = [list(a.split(counts)) for a in self._anchors(inputs, feats)]
            dets = self.fcos.postprocess_detections(split, anchors, [(ih, iw)] * inputs.shape[0])
        out = []
        for sample, det in zip(data_samples, dets):
            sx, sy = sample.meta.scale_factor
            boxes = det["boxes"] / det["boxes"].new_tensor([sx, sy, sx, sy])
            boxes = clip_boxes(boxes, sample.meta.ori_shape)
            pred = Detections(boxes=boxes.cpu(), scores=det["scores"].cpu(),
                              labels=torch.zeros(len(boxes), dtype=torch.long))
            out.append(DetSample(meta=sample.meta, gt=sample.gt, pred=pred))
        return out

    @torch.no_grad()
    def propose(self, image: np.ndarray) -> tuple[Tensor, Tensor]:
        """Proposals ``(N, 4)`` xyxy pixels and scores ``(N,)`` for an ``(H, W, 3)`` uint8 RGB image, prepared as
        SAM prepares it (longest side to the encoder's size, normalised, zero-padded to the square)."""
        from edgesam.transforms import ResizeLongestSide

        size = int(self.encoder.img_size)
        resized = ResizeLongestSide(size).apply_image(np.ascontiguousarray(image))
        x = torch.as_tensor(resized).permute(2, 0, 1)[None].float().to(self.fcos.head.classification_head.cls_logits
                                                                          .weight.device)
        x = self.data_preprocessor.normalize(x)
        x = nn.functional.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]))
        h, w = image.shape[:2]
        meta = ImageMeta(image_id=0, ori_shape=(h, w), img_shape=resized.shape[:2], pad_shape=(size, size),
                         scale_factor=(resized.shape[1] / w, resized.shape[0] / h))
        was_training = self.training
        self.eval()
        pred = self(x, [DetSample(meta=meta)], mode="predict")[0].pred
        self.train(was_training)
        return pred.boxes, pred.scores


def merge_proposals(point: Sequence[float], boxes: Tensor, scores: Tensor, k: int = 3) -> Tensor | None:
    """One box prompt for a click at ``point = (x, y)``: of the proposals that contain the point (all of them when
    none does), the ``k`` whose centres are nearest to it, averaged with their scores as weights. None without
    proposals.

    Args:
        boxes: ``(N, 4)`` xyxy pixels; scores: ``(N,)``.
    """
    if len(boxes) == 0:
        return None
    boxes, scores = boxes.float(), scores.float()
    x, y = float(point[0]), float(point[1])
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    if inside.any():
        boxes, scores = boxes[inside], scores[inside]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = (centres - centres.new_tensor([x, y])).norm(dim=1)
    near = dist.argsort()[:k]
    w = scores[near].clamp(min=1e-6)
    return (boxes[near] * w[:, None]).sum(0) / w.sum()


def point_prompt_with_proposals(predictor: SamPredictor, proposals: tuple[Tensor, Tensor],
                                point: Sequence[float], k: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SAM's mask for a single foreground click, with the merged proposal box as an extra prompt (the point alone,
    multimask, best by predicted IoU, when there is no proposal). Returns ``predictor.predict``'s triple."""
    box = merge_proposals(point, *proposals, k=k)
    pts, lab = np.array([point], np.float64), np.array([1])
    if box is None:
        masks, iou, low = predictor.predict(pts, lab, multimask_output=True)
        best = int(np.argmax(iou))
        return masks[best:best + 1], iou[best:best + 1], low[best:best + 1]
    h, w = predictor.original_size
    box = clip_boxes(box[None], (h, w))[0].numpy().astype(np.float64)
    return predictor.predict(pts, lab, box, multimask_output=False)


class ProposalRecall(BaseMetric):
    """Class-agnostic average recall of the proposals: for each IoU threshold 0.5:0.05:0.95, the fraction of
    non-crowd GT boxes matched by one of the image's top ``max_proposals`` proposals (each GT's best IoU), in
    original-image pixels. Keys ``proposal/AR@<n>`` (mean over thresholds) and ``proposal/recall@0.5``."""

    default_prefix = "proposal"

    def __init__(self, max_proposals: int = 100, collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.max_proposals = max_proposals
        self.thresholds = torch.linspace(0.5, 0.95, 10)

    def process(self, data_batch, data_samples: Sequence[DetSample]) -> None:
        for s in data_samples:
            gt = s.gt
            boxes = gt.boxes.float().cpu()
            if gt.iscrowd is not None:
                boxes = boxes[~gt.iscrowd.bool().cpu()]
            sx, sy = s.meta.scale_factor  # GT travels in the network-input frame; proposals are in original pixels
            boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
            pred = s.pred.boxes.float().cpu()[: self.max_proposals]
            best = box_iou(boxes, pred).max(dim=1).values if len(pred) and len(boxes) else torch.zeros(len(boxes))
            self.results.append((best[:, None] >= self.thresholds[None]).sum(0).numpy().astype(np.int64).tolist()
                                + [len(boxes)])

    def compute_metrics(self, results: list) -> dict[str, float]:
        arr = np.asarray(results, np.float64).reshape(-1, len(self.thresholds) + 1)
        total = max(arr[:, -1].sum(), 1.0)
        recall = arr[:, :-1].sum(0) / total
        return {f"AR@{self.max_proposals}": float(recall.mean()), "recall@0.5": float(recall[0])}
