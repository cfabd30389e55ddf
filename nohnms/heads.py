"""torchvision's Faster R-CNN stages extended as the NOH-NMS public code configures them.

* :class:`CrowdRPN` (``RegionProposalNetwork``): top-k over **all** FPN levels before NMS (``TOP_PROPOSALS_ALL_LEVEL``;
  torchvision takes the top-k of each level), ignore regions optionally matched by IoA, smooth-L1 ``beta`` as a
  parameter (torchvision fixes 1/9; the public config uses 1.0).
* :class:`HallucinatorRoIHeads` (``RoIHeads``): proposals labelled with ignore regions by IoA
  (:func:`nohnms.targets.label_proposals`), the box head's losses with a configurable smooth-L1 ``beta`` and, when
  an overlap head is given, the Nearby Objects Hallucinator: a second two-layer head on the same RoI features that
  predicts, for each proposal, its nearest neighbour's box (4 deltas) and the IoU with it (a sigmoid probability).
* :class:`OverlapPredictor`: the hallucinator's two output layers.

Targets travel as torchvision dicts per image: ``boxes (M, 4)`` persons, ``labels (M,)`` (1 = person; 0 is
torchvision's background), ``ignore (K, 4)`` ignore regions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import boxes as box_ops

from .targets import label_anchors_with_ignore, label_proposals, nearest_neighbour_targets

__all__ = ["CrowdRPN", "HallucinatorRoIHeads", "OverlapPredictor", "hallucinator_losses"]


class CrowdRPN(RegionProposalNetwork):
    """``RegionProposalNetwork`` with all-level top-k, IoA ignore regions and a smooth-L1 ``beta``.

    Args (besides torchvision's):
        top_k_all_levels: choose the ``pre_nms_top_n`` best anchors over all levels together.
        ignore_ioa: non-positive anchors whose IoA with an ignore region is ``> ignore_ioa`` are not sampled; None
            leaves ignore regions out of the RPN's targets altogether (the public config: ``RPN.IGNORE_IOA False``).
        smooth_l1_beta: the box loss's transition point.
    """

    def __init__(self, *args, top_k_all_levels: bool = True, ignore_ioa: float | None = None,
                 smooth_l1_beta: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.top_k_all_levels = bool(top_k_all_levels)
        self.ignore_ioa = ignore_ioa
        self.smooth_l1_beta = float(smooth_l1_beta)

    def _get_top_n_idx(self, objectness: Tensor, num_anchors_per_level: list[int]) -> Tensor:
        if not self.top_k_all_levels:
            return super()._get_top_n_idx(objectness, num_anchors_per_level)
        k = min(self.pre_nms_top_n(), objectness.shape[1])
        return objectness.topk(k, dim=1).indices

    def assign_targets_to_anchors(self, anchors: list[Tensor], targets: list[dict[str, Tensor]]):
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        if self.ignore_ioa is not None:
            labels = [label_anchors_with_ignore(lab, a, t["ignore"], self.ignore_ioa)
                      for lab, a, t in zip(labels, anchors, targets, strict=True)]
        return labels, matched

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(neg))[0]])
        labels_all = torch.cat(labels)
        targets_all = torch.cat(regression_targets)
        box_loss = F.smooth_l1_loss(pred_bbox_deltas[pos], targets_all[pos], beta=self.smooth_l1_beta,
                                    reduction="sum") / max(sampled.numel(), 1)
        obj_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels_all[sampled])
        return obj_loss, box_loss


class OverlapPredictor(nn.Module):
    """The hallucinator's outputs from its two-layer head: ``prob (R,)`` = sigmoid of one linear layer (the
    overlap probability, trained towards the neighbour's IoU) and ``deltas (R, 4)`` of the neighbour's box relative
    to the proposal. Initialised as the public code (normal std 0.01 / 0.001, zero biases)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.prob = nn.Linear(in_channels, 1)
        self.deltas = nn.Linear(in_channels, 4)
        nn.init.normal_(self.prob.weight, std=0.01)
        nn.init.normal_(self.deltas.weight, std=0.001)
        nn.init.zeros_(self.prob.bias)
        nn.init.zeros_(self.deltas.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return torch.sigmoid(self.prob(x)).squeeze(1), self.deltas(x)


def hallucinator_losses(prob: Tensor, deltas: Tensor, labels: Tensor, overlap_iou: Tensor, overlap_targets: Tensor,
                        iou_threshold: float = 0.4, prob_beta: float = 0.02, reg_beta: float = 1.0) -> dict:
    """The hallucinator's losses over the sampled RoIs of a batch (the public ``OverlapFastRCNNOutputs`` with
    ``UNIFORM_REG_DIVISOR``):

    * ``loss_overlap_prob``: smooth-L1 (``prob_beta``, ``PROB_LOSS_BETA`` 0.02) between the probability and the
      neighbour IoU, summed over foreground RoIs and divided by their number;
    * ``loss_overlap_reg``: smooth-L1 (``reg_beta``, the box head's) on the neighbour deltas of foreground RoIs whose
      neighbour IoU is ``> iou_threshold`` (``OVERLAP_IOU_THRESHOLD`` 0.4), divided by **all** sampled RoIs.

    Args:
        prob: ``(R,)``; deltas: ``(R, 4)``; labels: ``(R,)`` class labels (``> 0`` foreground);
        overlap_iou: ``(R,)``; overlap_targets: ``(R, 4)`` encoded neighbour boxes.
    """
    fg = labels > 0
    n_fg = int(fg.sum())
    loss_prob = F.smooth_l1_loss(prob[fg], overlap_iou[fg], beta=prob_beta, reduction="sum") / (n_fg + 1e-6)
    reg = fg & (overlap_iou > iou_threshold)
    loss_reg = F.smooth_l1_loss(deltas[reg], overlap_targets[reg], beta=reg_beta, reduction="sum") / (
        labels.numel() + 1e-6)
    return {"loss_overlap_prob": loss_prob, "loss_overlap_reg": loss_reg}


class HallucinatorRoIHeads(RoIHeads):
    """``RoIHeads`` (box only) with IoA ignore regions and the optional Nearby Objects Hallucinator.

    Args (besides torchvision's box arguments):
        overlap_head: a two-layer head on the pooled RoI features (``TwoMLPHead``), or None for the greedy baseline.
        overlap_predictor: :class:`OverlapPredictor` on its output.
        ignore_ioa: IoA of a proposal with an ignore region from which it is not sampled (:func:`label_proposals`).
        smooth_l1_beta: box-regression transition point (public config 1.0; torchvision 1/9).
        overlap_iou_threshold, prob_loss_beta: :func:`hallucinator_losses`.

    ``forward`` returns ``(outputs, losses)``; in eval mode ``outputs`` is one dict per image of every candidate
    above ``score_thresh`` **before NMS**: ``boxes (N, 4)`` clipped, ``scores (N,)``, ``overlap_boxes (N, 4)`` and
    ``overlap_probs (N,)`` (zeros without a hallucinator), so that every NMS runs on the same detections.
    """

    def __init__(self, *args, overlap_head: nn.Module | None = None, overlap_predictor: nn.Module | None = None,
                 ignore_ioa: float | None = 0.5, smooth_l1_beta: float = 1.0, overlap_iou_threshold: float = 0.4,
                 prob_loss_beta: float = 0.02, clip_boxes: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if (overlap_head is None) != (overlap_predictor is None):
            raise ValueError("HallucinatorRoIHeads: give both overlap_head and overlap_predictor, or neither")
        self.overlap_head = overlap_head
        self.overlap_predictor = overlap_predictor
        self.ignore_ioa = ignore_ioa
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.overlap_iou_threshold = float(overlap_iou_threshold)
        self.prob_loss_beta = float(prob_loss_beta)
        self.clip_boxes = bool(clip_boxes)

    @property
    def hallucinator(self) -> bool:
        return self.overlap_head is not None

    @torch.no_grad()
    def sample_targets(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, list[Tensor]]:
        """Proposals (with the persons appended) sampled and labelled per image.

        Returns lists over images of: ``proposals (R_i, 4)``, ``labels (R_i,)`` (1 person, 0 background),
        ``box_targets (R_i, 4)``, ``overlap_iou (R_i,)``, ``overlap_targets (R_i, 4)`` (encoded neighbour boxes).
        """
        props, labels, matched_boxes, overlap_iou, overlap_boxes = [], [], [], [], []
        for p, t in zip(proposals, targets, strict=True):
            gt = t["boxes"].to(p.dtype)
            p = torch.cat([p, gt])
            matched, lab, iou = label_proposals(p, gt, t["ignore"].to(p.dtype), self.proposal_matcher.high_threshold,
                                                self.proposal_matcher.low_threshold, self.ignore_ioa)
            if gt.shape[0]:
                lab = torch.where(lab > 0, t["labels"][matched], lab)
            props.append(p)
            labels.append(lab)
            matched_boxes.append(gt[matched] if gt.shape[0] else torch.zeros_like(p))
            o_iou, o_box = nearest_neighbour_targets(iou, gt)
            overlap_iou.append(o_iou)
            overlap_boxes.append(o_box)
        pos, neg = self.fg_bg_sampler(labels)
        out: dict[str, list[Tensor]] = {k: [] for k in ("proposals", "labels", "box_targets", "overlap_iou",
                                                         "overlap_targets")}
        for i, (pi, ni) in enumerate(zip(pos, neg, strict=True)):
            keep = torch.where(pi | ni)[0]
            p = props[i][keep]
            out["proposals"].append(p)
            out["labels"].append(labels[i][keep].clamp(min=0))
            out["box_targets"].append(self.box_coder.encode_single(matched_boxes[i][keep], p))
            out["overlap_iou"].append(overlap_iou[i][keep])
            out["overlap_targets"].append(self.box_coder.encode_single(overlap_boxes[i][keep], p))
        return out

    def box_losses(self, class_logits: Tensor, box_regression: Tensor, labels: Tensor, targets: Tensor) -> dict:
        """Cross-entropy over the sampled RoIs; class-specific smooth-L1 (``smooth_l1_beta``) on foreground RoIs,
        summed and divided by all sampled RoIs (as torchvision and detectron2)."""
        cls_loss = F.cross_entropy(class_logits, labels)
        fg = torch.where(labels > 0)[0]
        box = box_regression.reshape(box_regression.shape[0], -1, 4)[fg, labels[fg]]
        box_loss = F.smooth_l1_loss(box, targets[fg], beta=self.smooth_l1_beta, reduction="sum") / max(
            labels.numel(), 1)
        return {"loss_classifier": cls_loss, "loss_box_reg": box_loss}

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None):
        sampled = None
        if self.training:
            if targets is None:
                raise ValueError("HallucinatorRoIHeads: targets are needed in training mode")
            sampled = self.sample_targets(proposals, targets)
            proposals = sampled["proposals"]
        roi = self.box_roi_pool(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(self.box_head(roi))
        prob = deltas = None
        if self.hallucinator:
            prob, deltas = self.overlap_predictor(self.overlap_head(roi))
        if sampled is not None:
            labels = torch.cat(sampled["labels"])
            losses = self.box_losses(class_logits.float(), box_regression.float(), labels,
                                     torch.cat(sampled["box_targets"]))
            if self.hallucinator:
                losses.update(hallucinator_losses(
                    prob.float(), deltas.float(), labels, torch.cat(sampled["overlap_iou"]),
                    torch.cat(sampled["overlap_targets"]), self.overlap_iou_threshold, self.prob_loss_beta,
                    self.smooth_l1_beta))
            return [], losses
        return self.candidates(class_logits.float(), box_regression.float(), prob, deltas, proposals,
                               image_shapes), {}

    def candidates(self, class_logits: Tensor, box_regression: Tensor, prob: Tensor | None, deltas: Tensor | None,
                   proposals: list[Tensor], image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Per image, every (proposal, class) pair scoring ``> score_thresh`` with its neighbour prediction."""
        counts = [p.shape[0] for p in proposals]
        boxes = self.box_coder.decode(box_regression, proposals)  # (R, C+1, 4)
        scores = F.softmax(class_logits, -1)
        if prob is None:
            prob = scores.new_zeros(scores.shape[0])
            overlap = boxes[:, 0]  # unused placeholder location: with probability 0 NOH-NMS never eases
        else:
            overlap = self.box_coder.decode(deltas, proposals)[:, 0]
        out = []
        for b, s, ob, op, shape in zip(boxes.split(counts), scores.split(counts), overlap.split(counts),
                                       prob.split(counts), image_shapes, strict=True):
            if self.clip_boxes:
                b = box_ops.clip_boxes_to_image(b, shape)
                ob = box_ops.clip_boxes_to_image(ob, shape)
            b, s = b[:, 1:], s[:, 1:]  # drop the background column
            rows, cls = torch.where(s > self.score_thresh)
            cand = b[rows, cls]
            ok = box_ops.remove_small_boxes(cand, min_size=1e-2)
            rows, cls, cand = rows[ok], cls[ok], cand[ok]
            out.append(dict(boxes=cand, scores=s[rows, cls], labels=cls, overlap_boxes=ob[rows],
                            overlap_probs=op[rows]))
        return out
