"""YOLACT / YOLACT++ training losses (YOLACT Sec. 3 and 4; YOLACT++ Sec. 4.2), as the original computes them.

With ``N_pos`` the number of positive anchors in the whole batch:

* ``loss_cls`` (C): softmax cross-entropy over positives and hard negatives, negatives ranked by
  ``-log p(background)`` with at most 3 per positive (OHEM), ``/ N_pos``, weight 1.
* ``loss_box`` (B): smooth-L1 on SSD-coded deltas of positives, ``x 1.5 / N_pos``.
* ``loss_mask`` (M): per positive, pixel BCE between ``sigmoid(P c)`` and its GT mask (bilinearly downsampled to
  the prototype grid and binarised at 0.5), both cropped to the **GT** box, summed and divided by the GT box area
  in prototype cells; at most ``masks_to_train`` (100) positives per image, chosen at random and the sum rescaled
  by ``n_pos / 100``; ``x 6.125 / N_pos``.
* ``loss_semantic`` (S): sigmoid BCE of the P3 semantic logits against per-class union masks, ``/ (h w)``, averaged
  over images.
* ``loss_maskiou`` (I, YOLACT++): smooth-L1 between the re-scoring net's output for the GT class and the IoU of the
  binarised cropped prediction with its GT mask; objects whose GT mask covers ``<= discard_mask_area`` prototype
  cells are skipped; ``x 25 / N_pos``.

Ground truth comes as :class:`forge.data.structures.Instances` in network-input pixels; crowd objects only take
part through the crowd rule of :func:`yolact.matching.match_anchors`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forge.data.structures import Instances

from .assembly import assemble_masks, crop_masks
from .box_coding import encode
from .matching import match_anchors


def ohem_conf_loss(logits: Tensor, conf_t: Tensor, negpos_ratio: int = 3) -> Tensor:
    """Summed softmax CE over positives and the hardest ``negpos_ratio x`` negatives of each image.

    Args:
        logits: ``(B, A, C + 1)`` class logits (background = 0).
        conf_t: ``(B, A)`` targets: ``>0`` positive class + 1, 0 background, -1 neutral (ignored).

    Returns:
        scalar sum (not normalised).
    """
    b, a, c1 = logits.shape
    pos = conf_t > 0
    with torch.no_grad():
        hardness = torch.logsumexp(logits.detach(), -1) - logits.detach()[..., 0]  # -log p(background)
        hardness[pos] = 0
        hardness[conf_t < 0] = 0
        order = hardness.argsort(dim=1, descending=True, stable=True)
        rank = order.argsort(dim=1)
        num_neg = (negpos_ratio * pos.long().sum(1, keepdim=True)).clamp(max=a - 1)
        neg = (rank < num_neg) & ~pos & (conf_t >= 0)
    sel = pos | neg
    return F.cross_entropy(logits[sel], conf_t[sel], reduction="sum")


def mask_loss_single(
    prototypes: Tensor, coefs: Tensor, gt_masks: Tensor, gt_boxes: Tensor
) -> tuple[Tensor, Tensor]:
    """Mask loss terms of one image's selected positives.

    Args:
        prototypes: ``(k, h, w)``.
        coefs: ``(n, k)`` coefficients of the positives.
        gt_masks: ``(n, h, w)`` binary float target of each positive, at prototype resolution.
        gt_boxes: ``(n, 4)`` relative xyxy GT box of each positive.

    Returns:
        ``(n,)`` per-positive loss ``sum_px BCE / (GT box area in cells)`` and the ``(n, h, w)`` cropped soft masks.
    """
    _, h, w = prototypes.shape
    pred = crop_masks(assemble_masks(prototypes, coefs), gt_boxes, padding=1)
    bce = F.binary_cross_entropy(pred.clamp(0, 1), gt_masks, reduction="none")
    box_w = (gt_boxes[:, 2] - gt_boxes[:, 0]) * w
    box_h = (gt_boxes[:, 3] - gt_boxes[:, 1]) * h
    return bce.sum(dim=(1, 2)) / box_w / box_h, pred


def semantic_loss_single(logits: Tensor, masks: Tensor, labels: Tensor) -> Tensor:
    """Sum of sigmoid BCE of ``(C, h, w)`` logits against the union masks per class, divided by ``h w``.

    ``masks``: ``(n, H, W)`` float GT masks at input size (downsampled bilinearly and binarised here);
    ``labels``: ``(n,)`` contiguous classes.
    """
    c, h, w = logits.shape
    target = torch.zeros_like(logits)
    if masks.shape[0]:
        with torch.no_grad():
            small = F.interpolate(masks[None], (h, w), mode="bilinear", align_corners=False)[0].gt(0.5).float()
            for m, lab in zip(small, labels.tolist()):
                target[lab] = torch.maximum(target[lab], m)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / h / w


class YolactLoss(nn.Module):
    """All YOLACT(++) loss terms; weights and thresholds as the original (``forge/configs/loss/yolact*.yaml``).

    Args:
        pos_iou, neg_iou, crowd_iou: matching thresholds (see :func:`yolact.matching.match_anchors`).
        negpos_ratio: OHEM negatives per positive.
        conf_weight, box_weight, mask_weight, semantic_weight, maskiou_weight: term weights (1, 1.5, 6.125, 1, 25).
        masks_to_train: most positives per image in the mask loss (100; 300 for the 700 px model).
        discard_mask_area: GT masks covering at most this many prototype cells are left out of ``loss_maskiou``.
    """

    def __init__(
        self,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        crowd_iou: float = 0.7,
        negpos_ratio: int = 3,
        conf_weight: float = 1.0,
        box_weight: float = 1.5,
        mask_weight: float = 6.125,
        semantic_weight: float = 1.0,
        maskiou_weight: float = 25.0,
        masks_to_train: int = 100,
        discard_mask_area: float = 25.0,
    ) -> None:
        super().__init__()
        self.pos_iou, self.neg_iou, self.crowd_iou = pos_iou, neg_iou, crowd_iou
        self.negpos_ratio = negpos_ratio
        self.conf_weight, self.box_weight, self.mask_weight = conf_weight, box_weight, mask_weight
        self.semantic_weight, self.maskiou_weight = semantic_weight, maskiou_weight
        self.masks_to_train, self.discard_mask_area = masks_to_train, discard_mask_area

    def forward(
        self,
        outputs: dict[str, Tensor],
        targets: Sequence[Instances],
        input_size: tuple[int, int],
        maskiou_net: nn.Module | None = None,
    ) -> dict[str, Tensor]:
        """Args:
            outputs: raw model outputs: ``boxes (B, A, 4)``, ``cls_logits (B, A, C+1)``, ``coefs (B, A, k)``,
                ``prototypes (B, k, h, w)``, ``anchors (A, 4)``, optionally ``semantic (B, C, h3, w3)``.
            targets: per image GT in input pixels, with masks ``(N, H, W)`` at the input size.
            input_size: ``(H, W)`` of the network input (boxes are normalised by it).
            maskiou_net: the YOLACT++ re-scoring net; ``loss_maskiou`` is computed when given.

        Returns:
            ``loss_cls``, ``loss_box``, ``loss_mask`` and, when available, ``loss_semantic``, ``loss_maskiou``.
        """
        loc, logits, coefs = outputs["boxes"], outputs["cls_logits"], outputs["coefs"]
        protos, anchors = outputs["prototypes"], outputs["anchors"]
        bsz, num_anchors = logits.shape[:2]
        mh, mw = protos.shape[-2:]
        ih, iw = input_size
        device = logits.device
        scale = torch.tensor([iw, ih, iw, ih], dtype=torch.float32, device=device)

        conf_t = torch.zeros(bsz, num_anchors, dtype=torch.long, device=device)
        box_losses, mask_terms, semantic_terms = [], [], []
        iou_inputs, iou_targets, iou_labels = [], [], []
        for i, gt in enumerate(targets):
            gt = gt.to(device)
            if gt.masks is None:
                raise ValueError(f"YolactLoss: image {i} has no GT masks (YOLACT needs instance masks)")
            crowd = gt.iscrowd.bool() if gt.iscrowd is not None else torch.zeros(len(gt), dtype=torch.bool)
            boxes = gt.boxes.float() / scale
            keep = ~crowd
            obj_boxes, obj_labels, obj_masks = boxes[keep], gt.labels[keep], gt.masks[keep].float()
            if "semantic" in outputs:
                semantic_terms.append(semantic_loss_single(outputs["semantic"][i], obj_masks, obj_labels))
            if obj_boxes.shape[0] == 0:
                continue  # only background / crowd: contributes no positives and, by the 3:1 rule, no negatives
            crowd_boxes = boxes[crowd] if bool(crowd.any()) else None
            ct, gt_idx = match_anchors(obj_boxes, obj_labels, anchors, crowd_boxes,
                                       self.pos_iou, self.neg_iou, self.crowd_iou)
            conf_t[i] = ct
            pos = ct > 0
            pos_gt = gt_idx[pos]
            box_losses.append(F.smooth_l1_loss(loc[i][pos], encode(obj_boxes[pos_gt], anchors[pos]),
                                               reduction="sum"))
            # mask loss
            with torch.no_grad():
                small = F.interpolate(obj_masks[None], (mh, mw), mode="bilinear", align_corners=False)[0].gt(0.5)
            pos_coefs, pos_boxes = coefs[i][pos], obj_boxes[pos_gt]
            n_all = pos_coefs.shape[0]
            if n_all > self.masks_to_train:
                sel = torch.randperm(n_all, device=device)[: self.masks_to_train]
                pos_coefs, pos_boxes, pos_gt = pos_coefs[sel], pos_boxes[sel], pos_gt[sel]
            mask_t = small[pos_gt].float()
            per_mask, pred = mask_loss_single(protos[i], pos_coefs, mask_t, pos_boxes)
            mask_terms.append(per_mask.sum() * (n_all / max(1, pos_coefs.shape[0])))
            if maskiou_net is not None:
                ok = mask_t.sum(dim=(1, 2)) > self.discard_mask_area
                if bool(ok.any()):
                    p, t = pred[ok], mask_t[ok]
                    binary = p.detach().gt(0.5).float()
                    inter = (binary * t).sum(dim=(1, 2))
                    iou_targets.append(inter / (binary.sum(dim=(1, 2)) + t.sum(dim=(1, 2)) - inter))
                    iou_inputs.append(p[:, None])
                    iou_labels.append(obj_labels[pos_gt[ok]])

        num_pos = (conf_t > 0).sum().clamp(min=1).float()
        # zero that still touches every output, so all parameters get a (zero) gradient (DDP without unused params)
        zero = (loc.sum() + logits.sum() + coefs.sum() + protos.sum()) * 0
        losses = {
            "loss_cls": ohem_conf_loss(logits, conf_t, self.negpos_ratio) * self.conf_weight / num_pos,
            "loss_box": (torch.stack(box_losses).sum() if box_losses else zero) * self.box_weight / num_pos,
            "loss_mask": (torch.stack(mask_terms).sum() if mask_terms else zero) * self.mask_weight / num_pos,
        }
        if semantic_terms:
            losses["loss_semantic"] = torch.stack(semantic_terms).sum() * self.semantic_weight / bsz
        if maskiou_net is not None:
            if iou_inputs:
                pred_iou = maskiou_net(torch.cat(iou_inputs))
                pred_iou = pred_iou.gather(1, torch.cat(iou_labels)[:, None]).view(-1)
                loss_i = F.smooth_l1_loss(pred_iou, torch.cat(iou_targets), reduction="sum")
            else:
                loss_i = zero + sum(p.sum() * 0 for p in maskiou_net.parameters())
            losses["loss_maskiou"] = loss_i * self.maskiou_weight / num_pos
        return losses
