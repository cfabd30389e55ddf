"""Prompted-segmentation evaluation through ``forge-test`` (the EdgeSAM paper's mIoU tables and mask AP from
detector boxes), and the SAM image encoder as a ``forge-cache-embeddings`` teacher.

:class:`PromptSegmenter` wraps a :class:`~edgesam.sam.Sam` as an mmengine model (test / val only). Per image it
builds one prompt per GT instance (crowd and empty masks left out), decodes it and returns the masks at the original
size to :class:`forge.evaluation.prompt.PromptSegMetric`; with ``detections=`` (a detector's COCO results json) the
boxes of that file are the prompts and the masks go, as :class:`~forge.data.structures.Detections`, to the COCO
evaluator (mask AP).

What follows the official ``evaluation/eval_mIoU.py`` (commit ``b53372c``) and where it differs:

* the image is resized so that its longest side is the model input (bilinear, antialiased, on the float image, as
  the official evaluation's dataset does; the interactive predictor uses PIL instead), normalised and padded by
  ``Sam.preprocess``; prompts are mapped into that frame;
* modes: ``box`` (GT box), ``center_point`` (the GT mask's pixel farthest from its boundary, computed on the mask
  resized nearest to the input frame: :func:`edgesam.prompts.center_points`), ``point`` (a uniform random pixel of
  that mask), ``box_refine`` (GT box, then ``refine_iters`` extra decodes, each adding one point from the error
  region of the previous low-res prediction, :func:`edgesam.prompts.refinement_points`; the prompt encoder gets the
  box and all points, no mask input). ``refine_iters`` also refines the point modes. The paper's "box + 2 points"
  row is ``box_refine`` with ``refine_iters=2`` (the official script's ``--refine-iter 3``);
* one mask per prompt: the first mask token (``multimask=False``, the official default) or, with ``multimask``,
  the one of highest predicted IoU; binarised at logit 0 after upsampling to the original size;
* refinement points are sampled on the 256 x 256 low-res grid: prediction ``logits > 0``, GT = the input-frame GT
  padded and bilinearly downsampled ``> 0``, cells that overlap the resized image only; the grid index times
  ``input / 256`` is the new point;
* IoU against the **original** GT mask (the official script compares with the GT resized to the input frame and
  back); ``max_prompts`` draws instances without replacement, seeded by ``seed`` and the image id (the official
  script draws with replacement, seeded by the dataset index). Randomness comes from a CPU generator seeded per
  image, so the prompts do not depend on the batch, the device or the number of processes;
* with ``rpn`` (a trained :class:`edgesam.rpn.ProposalNet`, the paper's optional region-proposal module) the point
  modes add a box prompt per click, as the official ``--rpn`` evaluation: proposals of the padded input scored above
  0.1, no NMS; of those containing the click, the 5 nearest by centre, the highest-scoring of them
  (:func:`edgesam.rpn.merge_proposals_batch`); no proposal containing the click -> the point with two "not a point"
  tokens in the box's place (the official ``box_labels = -1``). The proposal net runs its own (frozen) copy of the
  encoder on the same padded input, where the official model reuses SAM's encoder pass: the same numbers when the
  encoders are the same weights, one more encoder forward per image. Each image's record then also carries, per
  prompt, ``rpn_found`` (a proposal contained the click), ``rpn_boxes`` (the merged box, original pixels; zeros
  where none) and ``gt_boxes``, for :class:`edgesam.rpn.ProposalPromptStats`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from edgesam.build import EDGE_SAM_IGNORED, build_sam
from edgesam.prompts import box_prompts, center_points, random_points, refinement_points
from edgesam.sam import Sam
from edgesam.transforms import ResizeLongestSide, resized_shape
from forge.data.structures import Detections, DetSample

__all__ = ["MODES", "PromptSegmenter", "TeacherEncoder", "load_detections", "resize_image"]

log = logging.getLogger(__name__)

MODES = ("box", "box_refine", "center_point", "point")


def resize_image(image: Tensor, long_side: int) -> Tensor:
    """``(3, H, W)`` pixel image (any dtype) -> ``(3, h, w)`` float32 with ``max(h, w) = long_side`` (bilinear,
    antialiased, ``align_corners=False``; sizes rounded half up as :func:`edgesam.transforms.resized_shape`)."""
    h, w = resized_shape(int(image.shape[-2]), int(image.shape[-1]), long_side)
    return F.interpolate(image[None].float(), (h, w), mode="bilinear", align_corners=False, antialias=True)[0]


class TeacherEncoder(nn.Module):
    """A SAM image encoder as a teacher of :mod:`forge.embedding_cache`: a list of ``(3, H, W)`` uint8 RGB images
    -> ``(B, 256, S/16, S/16)`` embeddings of the resized, normalised, padded inputs (S = 1024 for the releases).

    Args:
        name: ``edgesam.build_sam`` model name (None: read from the checkpoint).
        checkpoint: the weights file (its sha256 keys the cache).
        sam: an already built model instead (tests, seeded teachers: the state dict keys the cache).
    """

    def __init__(self, name: str | None = "vit_h", checkpoint: str | None = None, sam: Sam | None = None) -> None:
        super().__init__()
        self.sam = sam if sam is not None else build_sam(name, checkpoint)
        self.name = name
        self.checkpoint = checkpoint
        self.input_size = self.sam.img_size

    @torch.no_grad()
    def forward(self, images: Sequence[Tensor]) -> Tensor:
        x = torch.stack([self.sam.preprocess(resize_image(img.to(self.sam.device), self.input_size))
                         for img in images])
        return self.sam.image_encoder(x).float()


def load_detections(path: str, ann_file: str, score_thr: float = 0.0,
                    max_per_image: int | None = 100) -> tuple[dict[int, tuple[Tensor, Tensor, Tensor]], list[int]]:
    """A detector's COCO results json -> ``{image_id: (boxes (N, 4) xyxy, scores (N,), labels (N,))}`` sorted by
    score, with labels contiguous in the category-id order of ``ann_file`` (as the COCO dataset's); also returns
    the sorted category ids. Results below ``score_thr`` are dropped, at most ``max_per_image`` kept per image.

    Raises:
        ValueError: the file is not a results list, or a result lacks a key or has a bad value (message names the
            file and the result index).
    """
    from forge.evaluation.coco.results import load_results

    results, src = load_results(path)
    with open(ann_file) as f:
        cats = json.load(f).get("categories")
    if not isinstance(cats, list) or not cats:
        raise ValueError(f"{ann_file}: no 'categories' list to map the detections' category ids")
    cat_ids = sorted(int(c["id"]) for c in cats)
    to_label = {c: i for i, c in enumerate(cat_ids)}
    per_image: dict[int, list[tuple[list[float], float, int]]] = {}
    for i, r in enumerate(results):
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise ValueError(f"{src}: result #{i} has no '{key}'")
        bbox, score = r["bbox"], r["score"]
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox)
                or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0):
            raise ValueError(f"{src}: result #{i}: 'bbox' must be [x, y, w, h] with w, h >= 0, got {bbox!r}")
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"{src}: result #{i}: 'score' must be a finite number, got {score!r}")
        if r["category_id"] not in to_label:
            raise ValueError(f"{src}: result #{i}: category_id {r['category_id']!r} is not a category of {ann_file}")
        if score >= score_thr:
            per_image.setdefault(int(r["image_id"]), []).append((bbox, float(score), to_label[r["category_id"]]))
    out = {}
    for image_id, dets in per_image.items():
        dets.sort(key=lambda d: -d[1])
        dets = dets[:max_per_image] if max_per_image else dets
        boxes = box_prompts(torch.tensor([d[0] for d in dets], dtype=torch.float32), "xywh")
        out[image_id] = (boxes, torch.tensor([d[1] for d in dets]), torch.tensor([d[2] for d in dets]))
    return out, cat_ids


class PromptSegmenter(BaseModel):
    """A SAM evaluated with prompts built from each image's GT instances, or from a detector's boxes.

    Args:
        sam: the model (e.g. ``edgesam.build_sam(name)``; ``forge-test checkpoint=`` loads an official file).
        mode: ``'box'``, ``'box_refine'``, ``'center_point'`` or ``'point'`` (module docstring).
        refine_iters: extra decodes with a point from the error region (``box_refine`` needs at least 1).
        multimask: choose the highest-IoU of the three multimask outputs instead of the single-mask output.
        max_prompts: at most this many instances per image (SA-1K: 64), drawn without replacement; None: all.
        prompt_batch: prompts decoded at once (memory).
        seed: seed of the per-image prompt generators.
        detections: a detector's COCO results json: its boxes are the prompts and the output is
            :class:`~forge.data.structures.DetSample` predictions for ``forge.evaluation.coco.CocoMetric``.
        det_ann_file: the GT json whose category ids give the contiguous labels (needed with ``detections``).
        det_score_thr, det_max_per_image: detections below the score are dropped; at most this many per image.
        dataset_name: passed to the metric (``prompt/mIoU_<name>``).
        rpn: a :class:`edgesam.rpn.ProposalNet` whose proposals add a box to each point prompt (modes
            ``center_point`` / ``point``; module docstring); held outside the module tree, so ``checkpoint=`` files
            are SAM's alone.
        rpn_checkpoint: the proposal net's weights (a ``forge-train experiment=edgesam/rpn_*`` checkpoint).
        rpn_topk, rpn_score_thr: the merge rule's nearest-centre count (5) and score threshold (0.1), official.
    """

    def __init__(self, sam: nn.Module, mode: str = "box", refine_iters: int = 0, multimask: bool = False,
                 max_prompts: int | None = None, prompt_batch: int = 32, seed: int = 0,
                 detections: str | None = None, det_ann_file: str | None = None, det_score_thr: float = 0.0,
                 det_max_per_image: int | None = 100, dataset_name: str | None = None,
                 rpn: nn.Module | None = None, rpn_checkpoint: str | None = None, rpn_topk: int = 5,
                 rpn_score_thr: float = 0.1, data_preprocessor: Mapping | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if mode not in MODES:
            raise ValueError(f"PromptSegmenter: mode={mode!r} is invalid; choose one of {', '.join(MODES)}")
        if refine_iters < 0 or (mode == "box_refine" and refine_iters < 1):
            raise ValueError(f"PromptSegmenter: refine_iters={refine_iters} is invalid for mode {mode!r} "
                             "(box_refine needs >= 1, others >= 0)")
        if detections is not None and (mode != "box" or refine_iters):
            raise ValueError("PromptSegmenter: detections= gives box prompts without GT: use mode='box', "
                             "refine_iters=0")
        if detections is not None and not det_ann_file:
            raise ValueError("PromptSegmenter: detections= needs det_ann_file= (the GT json: category ids)")
        self.sam = sam.eval()
        self.mode, self.refine_iters, self.multimask = mode, int(refine_iters), bool(multimask)
        self.max_prompts = None if max_prompts is None else int(max_prompts)
        self.prompt_batch, self.seed, self.dataset_name = int(prompt_batch), int(seed), dataset_name
        self.detections = None
        if detections is not None:
            self.detections, self.det_cat_ids = load_detections(detections, det_ann_file, det_score_thr,
                                                                det_max_per_image)
            self.det_source = detections
        self.transform = ResizeLongestSide(self.sam.img_size)
        if rpn is not None and mode not in ("center_point", "point"):
            raise ValueError(f"PromptSegmenter: rpn= adds boxes to point prompts; mode {mode!r} is not a point mode")
        if rpn is not None and rpn_checkpoint:
            from edgesam.distill.builders import read_state

            rpn.load_state_dict(read_state(rpn_checkpoint), strict=True)
            log.info("region proposals: loaded %s", rpn_checkpoint)
        if rpn is not None:
            rpn.eval().requires_grad_(False)
        object.__setattr__(self, "rpn", rpn)  # not a submodule: checkpoint= holds SAM's weights only
        self.rpn_topk, self.rpn_score_thr = int(rpn_topk), float(rpn_score_thr)

    def _apply(self, fn, recurse: bool = True):
        if self.rpn is not None:
            self.rpn._apply(fn, recurse)
        return super()._apply(fn, recurse)

    # -- checkpoints: an official SAM / MobileSAM / EdgeSAM file has the Sam's names, without our 'sam.' prefix
    def adapt_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        if any(k.startswith("student.image_encoder.") for k in state):  # a distillation run (edgesam.distill)
            return {f"sam.{k.removeprefix('student.')}": v for k, v in state.items() if k.startswith("student.")}
        if not any(k.startswith("image_encoder.") for k in state):
            return None
        out = {}
        for key, value in state.items():
            why = next((w for p, w in EDGE_SAM_IGNORED.items() if key.startswith(p)), None)
            if why is not None:
                log.warning("ignoring %s: %s", key, why)
                continue
            out[f"sam.{key}"] = value
        return out

    def train(self, mode: bool = True) -> PromptSegmenter:
        super().train(mode)
        self.sam.eval()  # BatchNorm statistics and dropout stay in inference mode
        return self

    def forward(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None,
                mode: str = "predict") -> list:
        if mode != "predict":
            raise NotImplementedError(f"PromptSegmenter only evaluates (mode='predict'), got mode={mode!r}")
        if data_samples is None:
            raise ValueError("PromptSegmenter needs the data samples (image sizes and ground truth)")
        with torch.no_grad():
            batch = self._inputs(inputs, data_samples)
            emb = self.sam.image_encoder(batch).float()
            props = self.rpn.propose_batch(batch, self.rpn_score_thr) if self.rpn is not None else [None] * len(emb)
            return [self._predict_one(e, s, p) for e, s, p in zip(emb, data_samples, props)]

    # -- steps
    def _inputs(self, inputs: Tensor, samples: Sequence[DetSample]) -> Tensor:
        """Batch ``(B, 3, H, W)`` pixels -> SAM's padded, normalised ``(B, 3, S, S)``, each image cropped to its own
        size and resized (longest side S)."""
        batch = []
        for img, s in zip(inputs, samples):
            if tuple(s.meta.img_shape) != tuple(s.meta.ori_shape):
                raise ValueError(f"image {s.meta.image_id}: PromptSegmenter resizes images itself; evaluate without "
                                 f"a resizing pipeline (img_shape {s.meta.img_shape} != ori_shape {s.meta.ori_shape})")
            h, w = s.meta.ori_shape
            batch.append(self.sam.preprocess(resize_image(img[:, :h, :w].to(self.sam.device), self.sam.img_size)))
        return torch.stack(batch)

    def _generator(self, image_id: Any) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + int(image_id))

    def _input_masks(self, masks: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """GT ``(P, H, W)`` bool -> ``(P, h, w)`` bool in the resized input frame (nearest, as the official eval)."""
        return F.interpolate(masks[:, None].float(), input_hw, mode="nearest")[:, 0] > 0.5

    def _point_prompts(self, gt: Tensor, input_hw: tuple[int, int], ori_hw: tuple[int, int],
                       g: torch.Generator) -> Tensor:
        """``(P, 1, 2)`` input-frame points of ``self.mode`` for GT ``(P, H, W)``. A mask that vanishes when resized
        down to the input (a few pixels of a large image) gets its point on the original mask, scaled."""
        gt_in = self._input_masks(gt, input_hw)
        lost = ~gt_in.flatten(1).any(1)
        fn = center_points if self.mode == "center_point" else (lambda m: random_points(m, 1, g))
        xy = torch.zeros((gt.shape[0], 1, 2))
        if (~lost).any():
            xy[~lost] = fn(gt_in[~lost])
        if lost.any():
            xy[lost] = self.transform.apply_coords(fn(gt[lost]), ori_hw)
        return xy

    def _decode(self, emb: Tensor, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None) -> Tensor:
        low, iou = self.sam.decode(emb[None], points, boxes, None, multimask_output=self.multimask)
        if self.multimask:
            low = low.gather(1, iou.argmax(1)[:, None, None, None].expand(-1, 1, *low.shape[2:]))
        return low[:, 0].float()

    def _decode_with_proposals(self, emb: Tensor, points: tuple[Tensor, Tensor],
                               proposals: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Single clicks ``(P, 1, 2)`` + the merged proposal boxes (input frame) -> low-res logits ``(P, h, w)``.
        Also returns the boxes and which prompts got one, for the refinement decodes."""
        from edgesam.rpn import merge_proposals_batch

        xy, lab = points
        boxes, found = merge_proposals_batch(xy[:, 0].cpu(), proposals[0].cpu(), proposals[1].cpu(), self.rpn_topk,
                                             self.rpn_score_thr)
        return self._decode_mixed(emb, points, boxes.to(emb.device), found.to(emb.device)), boxes, found

    def _decode_mixed(self, emb: Tensor, points: tuple[Tensor, Tensor], boxes: Tensor, found: Tensor) -> Tensor:
        """Points + a box where ``found``, else points + two not-a-point tokens (SAM pads one when there is no box,
        so one ``-1`` point is appended here)."""
        xy, lab = points
        low = None
        for sel, with_box in ((found, True), (~found, False)):
            if not sel.any():
                continue
            if with_box:
                part = self._decode(emb, (xy[sel], lab[sel]), boxes[sel])
            else:
                n = int(sel.sum())
                pad_xy, pad_lab = xy.new_zeros(n, 1, 2), lab.new_full((n, 1), -1)
                part = self._decode(emb, (torch.cat([xy[sel], pad_xy], 1), torch.cat([lab[sel], pad_lab], 1)), None)
            if low is None:
                low = part.new_zeros((xy.shape[0], *part.shape[1:]))
            low[sel] = part
        return low

    def _segment(self, emb: Tensor, gt: Tensor | None, boxes: Tensor | None, input_hw: tuple[int, int],
                 ori_hw: tuple[int, int], g: torch.Generator, proposals: tuple[Tensor, Tensor] | None = None,
                 rpn_out: list | None = None) -> Tensor:
        """Prompts of one chunk -> ``(P, H, W)`` bool masks at the original size. With ``proposals``, the merged
        boxes (input frame, ``(P, 4)``) and which prompts got one (``(P,)``) are appended to ``rpn_out``."""
        dev = emb.device
        points = None
        if self.mode in ("center_point", "point"):
            xy = self._point_prompts(gt, input_hw, ori_hw, g)
            points = (xy.to(dev), torch.ones(xy.shape[:2], dtype=torch.long, device=dev))
        box_in = None if boxes is None else self.transform.apply_boxes(boxes, ori_hw).to(dev)
        found = None
        if proposals is not None:
            low, box_in, found = self._decode_with_proposals(emb, points, proposals)
            box_in, found = box_in.to(dev), found.to(dev)
            if rpn_out is not None:
                rpn_out.append((box_in.cpu(), found.cpu()))
        else:
            low = self._decode(emb, points, box_in)
        if self.refine_iters:
            size = self.sam.img_size
            gt_pad = F.pad(self._input_masks(gt, input_hw).float(), (0, size - input_hw[1], 0, size - input_hw[0]))
            gt_low = F.interpolate(gt_pad[:, None], low.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
            stride = size / low.shape[-1]
            valid = torch.zeros(low.shape[-2:], dtype=torch.bool)
            valid[: math.ceil(input_hw[0] / stride), : math.ceil(input_hw[1] / stride)] = True
            for _ in range(self.refine_iters):
                xy, lab = refinement_points(low.cpu() > self.sam.mask_threshold, gt_low, valid, generator=g)
                xy, lab = (xy * stride).to(dev), lab.to(dev)
                points = (xy, lab) if points is None else (torch.cat([points[0], xy], 1),
                                                           torch.cat([points[1], lab], 1))
                low = self._decode(emb, points, box_in) if found is None else self._decode_mixed(emb, points, box_in,
                                                                                                 found)
        masks = self.sam.postprocess_masks(low[:, None], input_hw, ori_hw)[:, 0]
        return (masks > self.sam.mask_threshold).cpu()

    def _chunks(self, n: int) -> list[slice]:
        return [slice(i, min(i + self.prompt_batch, n)) for i in range(0, n, self.prompt_batch)]

    def _predict_one(self, emb: Tensor, sample: DetSample, proposals: tuple[Tensor, Tensor] | None = None) -> Any:
        meta = sample.meta
        ori_hw = (int(meta.ori_shape[0]), int(meta.ori_shape[1]))
        input_hw = resized_shape(*ori_hw, self.sam.img_size)
        g = self._generator(meta.image_id)
        if self.detections is not None:
            boxes, scores, labels = self.detections.get(int(meta.image_id), (torch.zeros((0, 4)), torch.zeros(0),
                                                                              torch.zeros(0, dtype=torch.long)))
            parts = [self._segment(emb, None, boxes[c], input_hw, ori_hw, g) for c in self._chunks(len(boxes))]
            masks = torch.cat(parts) if parts else torch.zeros((0, *ori_hw), dtype=torch.bool)
            return DetSample(meta=meta, gt=sample.gt,
                             pred=Detections(boxes=boxes, scores=scores, labels=labels.long(), masks=masks))
        gt = sample.gt
        if gt is None or gt.masks is None:
            raise ValueError(f"image {meta.image_id}: PromptSegmenter needs GT masks (dataset with_masks=true)")
        masks_gt = gt.masks[:, : ori_hw[0], : ori_hw[1]].cpu()  # the collate pads masks with the batch
        keep = (~gt.iscrowd.cpu().bool()) & masks_gt.flatten(1).any(1)
        idx = keep.nonzero().flatten()
        if self.max_prompts is not None and idx.numel() > self.max_prompts:
            idx = idx[torch.randperm(idx.numel(), generator=g)[: self.max_prompts]].sort().values
        masks_gt, boxes = masks_gt[idx], gt.boxes.cpu()[idx].float()
        use_box = self.mode in ("box", "box_refine")
        rpn_out: list = []
        parts = [self._segment(emb, masks_gt[c], boxes[c] if use_box else None, input_hw, ori_hw, g, proposals,
                               rpn_out) for c in self._chunks(len(idx))]
        pred = torch.cat(parts) if parts else torch.zeros((0, *ori_hw), dtype=torch.bool)
        out = dict(pred_masks=pred, gt_masks=masks_gt, gt_labels=gt.labels.cpu()[idx], image_id=meta.image_id)
        if proposals is not None:  # what the proposals gave each click (edgesam.rpn.ProposalPromptStats reads it)
            sx, sy = input_hw[1] / ori_hw[1], input_hw[0] / ori_hw[0]
            merged = torch.cat([b for b, _ in rpn_out]) if rpn_out else torch.zeros((0, 4))
            out.update(rpn_boxes=merged / merged.new_tensor([sx, sy, sx, sy]), gt_boxes=boxes,
                       rpn_found=torch.cat([f for _, f in rpn_out]) if rpn_out else torch.zeros(0, dtype=torch.bool))
        if self.dataset_name:
            out["dataset"] = self.dataset_name
        return out
