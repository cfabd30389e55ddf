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

from edgesam.predictor import SamPredictor
from edgesam.rep_vit import RepViT
from edgesam.sam import PIXEL_MEAN, PIXEL_STD
from forge.data.structures import Detections, DetSample, ImageMeta
from forge.models import ImagePreprocessor
from forge.ops import box_iou, clip_boxes
from forge.precision import float32_region

LEVELS = ("stage1", "stage2", "stage3")  # strides 8, 16, 32
# the official evaluation's rule (EdgeSAM evaluation/eval_mIoU.py, b53372c): proposals scored above 0.1, without NMS;
# of those that contain the click, the 5 with centres nearest to it; of these the highest-scoring one is the box
OFFICIAL_SCORE_THR = 0.1
OFFICIAL_TOPK = 5


class _NoBackbone(nn.Module):
    """FCOS wants a backbone with ``out_channels``; ours runs outside it (``ProposalNet.features``)."""

    out_channels = 256


def load_encoder(encoder: nn.Module, path: str) -> None:
    """Load ``encoder``'s weights (strict) from an EdgeSAM release (``image_encoder.*``), a forge-train run of ours
    (mmengine checkpoint: ``student.image_encoder.*`` of a distillation, ``sam.image_encoder.*`` of a
    SamPromptTrainer) or a bare encoder state dict. Raises ``ValueError`` naming the file when the keys or shapes do
    not fit."""
    from edgesam.distill.builders import read_state  # forge checkpoints hold mmengine types: safe_load reads them

    state = read_state(path)
    for prefix in ("image_encoder.", "student.image_encoder.", "sam.image_encoder."):
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            break
    own = encoder.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"encoder_checkpoint {path}: does not fit the encoder ({len(missing)} missing keys "
                         f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(shapes)} of another "
                         f"shape {shapes[:3]})")
    encoder.load_state_dict(state, strict=True)


class ProposalNet(BaseModel):
    """Class-agnostic FCOS proposals on RepViT features.

    Args:
        encoder: the RepViT image encoder (EdgeSAM's); ``RepViT()`` if None.
        encoder_checkpoint: an EdgeSAM file (``image_encoder.*`` keys, e.g. ``edge_sam.pth``), a forge-train
            checkpoint of ours or an encoder state dict to load into ``encoder`` (strict, :func:`load_encoder`), or
            None.
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
            load_encoder(self.encoder, encoder_checkpoint)
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
    def propose_batch(self, inputs: Tensor, score_thresh: float = OFFICIAL_SCORE_THR, nms: bool = False,
                      topk_candidates: int = 2000) -> list[tuple[Tensor, Tensor]]:
        """Proposals ``[(boxes (N, 4), scores (N,))]`` in the frame of ``inputs`` (``(B, 3, H, W)``, normalised and
        padded as SAM's input), post-processed as the official evaluation asks its head (``forward_rpn(score_thr=0.1,
        with_nms=False)``: ``nms_pre=2000`` per level, scores above the threshold, no NMS, no cap on the count)
        unless ``nms`` (then this model's ``nms_thresh`` and ``detections_per_img``, as in training)."""
        f = self.fcos
        saved = (f.score_thresh, f.nms_thresh, f.detections_per_img, f.topk_candidates)
        f.score_thresh, f.topk_candidates = float(score_thresh), int(topk_candidates)
        if not nms:  # torchvision always runs NMS: IoU > 1 never happens, and every candidate is kept
            f.nms_thresh, f.detections_per_img = 1.0, 10**9
        was_training = self.training
        self.eval()
        try:
            preds = self(inputs, None, mode="predict")
        finally:
            f.score_thresh, f.nms_thresh, f.detections_per_img, f.topk_candidates = saved
            self.train(was_training)
        return [(p.pred.boxes, p.pred.scores) for p in preds]

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


def merge_proposals(point: Sequence[float], boxes: Tensor, scores: Tensor, topk: int = OFFICIAL_TOPK,
                    score_thr: float = OFFICIAL_SCORE_THR) -> Tensor | None:
    """The box prompt for a click at ``point = (x, y)``, by the official rule: of the proposals scored above
    ``score_thr`` that contain the point strictly inside, the ``topk`` whose centres are nearest to it (Euclidean),
    and of these the one with the highest score. None when no proposal contains the point (the official evaluation
    then gives SAM the point and a "not a point" box, :func:`point_prompt_with_proposals`).

    Where the official code differs by accident, ours is deterministic: it sums the boxes that tie for the top score
    (``(boxes * (scores >= max)).sum(0)``), ours takes the nearest of them; it breaks distance ties by ``topk``'s
    order, ours by the proposal order.

    Args:
        boxes: ``(N, 4)`` xyxy pixels, in the frame of ``point``; scores: ``(N,)``.
    """
    merged, found = merge_proposals_batch(torch.tensor([[float(point[0]), float(point[1])]]), boxes, scores, topk,
                                          score_thr)
    return merged[0] if bool(found[0]) else None


def merge_proposals_batch(points: Tensor, boxes: Tensor, scores: Tensor, topk: int = OFFICIAL_TOPK,
                          score_thr: float = OFFICIAL_SCORE_THR) -> tuple[Tensor, Tensor]:
    """:func:`merge_proposals` for ``(P, 2)`` clicks on one image's proposals at once.

    Returns:
        ``(P, 4)`` boxes (zeros where none) and ``(P,)`` bool: a proposal contains the click.
    """
    if topk < 1:
        raise ValueError(f"merge_proposals: topk must be >= 1, got {topk}")
    points = points.float()
    keep = scores > score_thr  # mmdet's filter_scores_and_topk keeps scores > score_thr
    boxes, scores = boxes[keep].float().to(points.device), scores[keep].float().to(points.device)
    p = points.shape[0]
    if len(boxes) == 0:
        return points.new_zeros(p, 4), torch.zeros(p, dtype=torch.bool, device=points.device)
    x, y = points[:, 0:1], points[:, 1:2]
    inside = (boxes[None, :, 0] < x) & (x < boxes[None, :, 2]) & (boxes[None, :, 1] < y) & (y < boxes[None, :, 3])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = torch.cdist(points, centres).masked_fill(~inside, float("inf"))  # (P, N)
    k = min(topk, len(boxes))
    order = dist.argsort(dim=1, stable=True)[:, :k]  # nearest first; ties by proposal order
    near_inside = inside.gather(1, order)
    near_scores = scores[order].masked_fill(~near_inside, float("-inf"))
    # the highest score among the k nearest; argmax returns the first maximum, i.e. the nearest of tied scores
    best = order.gather(1, near_scores.argmax(dim=1, keepdim=True))[:, 0]
    found = inside.any(dim=1)
    return torch.where(found[:, None], boxes[best], boxes.new_zeros(())), found


def point_prompt_with_proposals(predictor: SamPredictor, proposals: tuple[Tensor, Tensor],
                                point: Sequence[float], topk: int = OFFICIAL_TOPK,
                                score_thr: float = OFFICIAL_SCORE_THR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SAM's single-mask output for a foreground click with the proposal box of :func:`merge_proposals` (proposals
    and point in original-image pixels). Without a box, as the official evaluation: the point and two "not a point"
    tokens where the box corners would be. Returns ``predictor.predict``'s triple (masks, IoU, low-res logits)."""
    box = merge_proposals(point, *proposals, topk=topk, score_thr=score_thr)
    pts, lab = np.array([point], np.float64), np.array([1])
    if box is not None:
        h, w = predictor.original_size
        box = clip_boxes(box[None], (h, w))[0].numpy().astype(np.float64)
        return predictor.predict(pts, lab, box, multimask_output=False)
    predictor._check_inside(pts[None], "point")  # the predictor's own check: a click outside the image is an error
    xy = predictor.transform.apply_coords(torch.tensor([[float(point[0]), float(point[1])], [0.0, 0.0]]),
                                          predictor.original_size)
    dev = predictor.device
    # labels (1, -1) + the padding SamPredictor adds without a box = point, not-a-point, not-a-point
    masks, iou, low = predictor.predict_torch(xy[None].to(dev), torch.tensor([[1, -1]], device=dev),
                                              multimask_output=False)
    return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low[0].cpu().numpy()


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


class ProposalPromptStats(BaseMetric):
    """What the region proposals gave the clicks of a :class:`edgesam.evaluate.PromptSegmenter` run with ``rpn=``
    (its records' ``rpn_found``, ``rpn_boxes``, ``gt_boxes``, ``pred_masks``, ``gt_masks``), over all prompts:

    * ``rpn_prompt/hit``: the fraction of clicks strictly inside a proposal scored above the threshold (the others
      get the point alone, with not-a-point box tokens);
    * ``rpn_prompt/box_iou``: mean IoU of the merged box with the instance's GT box, over the hits;
      ``rpn_prompt/box_iou@0.5``: the fraction of all clicks whose merged box has IoU >= 0.5 with it;
    * ``rpn_prompt/mIoU_hit``, ``rpn_prompt/mIoU_miss``: the mask mIoU (as ``forge.evaluation.prompt``) over the
      clicks with / without a box (NaN where there are none)."""

    default_prefix = "rpn_prompt"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        from forge.evaluation.prompt import mask_iou

        for s in data_samples:
            if "rpn_found" not in s:
                raise ValueError("ProposalPromptStats: the predictions have no 'rpn_found': evaluate a "
                                 "PromptSegmenter with rpn= (a point mode)")
            found = s["rpn_found"].bool().cpu()
            pred, gt = s["pred_masks"].cpu(), s["gt_masks"].cpu()
            miou = mask_iou(pred, gt) if len(found) else torch.zeros(0)
            boxes, gt_boxes = s["rpn_boxes"].float().cpu(), s["gt_boxes"].float().cpu()
            biou = box_iou(boxes, gt_boxes).diagonal() if len(found) else torch.zeros(0)
            biou = torch.where(found, biou, torch.zeros(()))
            self.results.append(np.stack([found.numpy().astype(np.float64), np.asarray(biou, np.float64),
                                          np.asarray(miou, np.float64).reshape(-1)], 1))

    def compute_metrics(self, results: list) -> dict[str, float]:
        arr = np.concatenate([r.reshape(-1, 3) for r in results]) if results else np.zeros((0, 3))
        hit = arr[:, 0] > 0
        nan = float("nan")
        return {"hit": float(hit.mean()) if len(arr) else nan,
                "box_iou": float(arr[hit, 1].mean()) if hit.any() else nan,
                "box_iou@0.5": float((arr[:, 1] >= 0.5).mean()) if len(arr) else nan,
                "mIoU_hit": float(arr[hit, 2].mean()) if hit.any() else nan,
                "mIoU_miss": float(arr[~hit, 2].mean()) if (~hit).any() else nan}
