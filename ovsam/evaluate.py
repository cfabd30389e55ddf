"""OVSAM evaluation through ``forge-test``: per-instance mask IoU (base / novel) and recognition accuracy with GT
box or GT point prompts, and COCO mask AP with a detector's boxes (the paper's main table and its detector row).

:class:`OVSAMEvaluator` wraps a :class:`~ovsam.model.CLIP2SAM` and a text classifier as an mmengine test-only
model. Per image it builds one prompt per GT instance (crowd and empty masks left out; with a base / novel split only
instances of those classes, as the official ``sub_split='48_17'`` filter), decodes the masks, fuses the head's
logits with frozen CLIP's and returns, for :class:`forge.evaluation.prompt.PromptSegMetric`, the masks at the
original size, the GT and the predicted labels (``top-1`` = argmax of the fused softmax without background, the
official rule) and the fused scores (top-5). With ``detections=`` (a detector's COCO results json) its boxes are the
prompts and the output is :class:`~forge.data.structures.Detections` for ``forge.evaluation.coco.CocoMetric``: each
detection keeps the detector's box and score and gets our mask and our label (the official ``use_gt_prompt=False``
branch: ``scores = pred_instances.scores``, labels from the fused scores).

What follows the official evaluation (``seg/configs/ovsam/*_point.py``, ``InsClsIoUMetric``) and where it differs:

* image: longest side to the input size (1024), SAM's mean / std, zero padding bottom-right
  (:func:`ovsam.model.preprocess`); masks are bilinearly upsampled to the padded input, cropped, upsampled to the
  original size and thresholded at probability 0.5; IoU against the original-size GT mask;
* prompts: ``box`` (GT box), ``center_point`` (the GT mask's pixel farthest from its boundary on the mask resized
  nearest to the input frame, the official ``get_center_coords`` with ``rescale_shape``), ``point`` (a uniform
  pixel of that mask, seeded per image);
* the frozen-CLIP RoI takes the **GT box** in every mode (``clip_boxes='gt'``, what the official code does even for
  point prompts; ``'prompt'`` uses the prompt box, or the predicted mask's box for points);
* accuracy: top-1 of the fused scores (official ``score = (pred_label == gt_label) * 100``); base / novel by the GT
  class. A prompt whose predicted and GT masks are both empty is left out of the IoU means (the official metric would
  count it as IoU 0: ``inter / (union + 1e-8)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from edgesam.evaluate import load_detections
from edgesam.prompts import center_points, random_points
from edgesam.transforms import ResizeLongestSide, resized_shape
from forge.data.structures import Detections, DetSample

from .builders import build_clip2sam, categories, text_classifier
from .fusion import ALPHA, BETA, fuse_scores, top_labels
from .head import masks_to_boxes_exclusive
from .model import CLIP2SAM, MASK_THRESHOLD, preprocess
from .vocab import normalise

__all__ = ["MODES", "OVSAMEvaluator", "build_clip2sam", "categories", "class_split", "gt_prompts",
           "postprocess_masks", "text_classifier"]

MODES = ("box", "center_point", "point")
FROZEN = ("backbone", "neck", "pe")


def _indices(spec: Sequence[int | str], names: Sequence[str] | None, k: int, what: str) -> list[int]:
    keys = {normalise(n): i for i, n in enumerate(names or [])}
    out = []
    for c in spec:
        if isinstance(c, str):
            if normalise(c) not in keys:
                raise ValueError(f"{what}: class {c!r} is not one of the dataset's classes")
            out.append(keys[normalise(c)])
        elif not 0 <= int(c) < k:
            raise ValueError(f"{what}: class index {c} outside 0..{k - 1}")
        else:
            out.append(int(c))
    return out


def class_split(num_classes: int, base: Sequence[int | str] | None = None, novel: Sequence[int | str] | None = None,
                class_names: Sequence[str] | None = None, ann_file: str | None = None,
                novel_frequencies: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
    """``(base (K,) bool, evaluated (K,) bool)`` of a base / novel split.

    Novel classes are ``novel`` (names in ``class_names`` or indices) or the categories of ``ann_file`` whose LVIS
    ``frequency`` is in ``novel_frequencies`` (``['r']``: LVIS rare). Base classes are ``base``, or every class not
    novel. Only with both lists given can a class be neither (COCO 48 / 17: 15 classes); those are not evaluated.
    Without any split every class is novel (the official default: CLIP-leaning exponents for all).
    """
    k = int(num_classes)
    if novel_frequencies is not None:
        if ann_file is None or novel is not None:
            raise ValueError("class_split: novel_frequencies= needs ann_file= and no novel= list")
        cats = categories(ann_file)
        if len(cats) != k:
            raise ValueError(f"{ann_file}: {len(cats)} categories for a classifier of {k} classes")
        missing = [c.get("name") for c in cats if "frequency" not in c]
        if missing:
            raise ValueError(f"{ann_file}: categories without 'frequency' (not LVIS?): {missing[:3]}")
        novel = [i for i, c in enumerate(cats) if c["frequency"] in set(novel_frequencies)]
    base_m = torch.zeros(k, dtype=torch.bool, device="cpu")  # CPU masks (also under a meta-device build)
    evaluated = torch.ones(k, dtype=torch.bool, device="cpu")
    if novel is None and base is None:
        return base_m, evaluated
    novel_i = _indices(novel or [], class_names, k, "novel classes")
    if base is None:
        base_m[:] = True
        base_m[novel_i] = False
        return base_m, evaluated
    base_i = _indices(base, class_names, k, "base classes")
    both = sorted(set(base_i) & set(novel_i))
    if both:
        raise ValueError(f"class_split: classes {both[:5]} are both base and novel")
    base_m[base_i] = True
    if novel is not None:
        evaluated[:] = False
        evaluated[base_i + novel_i] = True
    return base_m, evaluated


def postprocess_masks(low: Tensor, input_size: int, resized_hw: tuple[int, int],
                      ori_hw: tuple[int, int]) -> Tensor:
    """Low-res logits ``(N, 1, s, s)`` -> ``(N, H, W)`` bool at the original size (bilinear to the padded input,
    crop, bilinear to the original size, probability > 0.5), as the official ``postprocess_masks``."""
    up = F.interpolate(low.float(), size=(input_size, input_size), mode="bilinear", align_corners=False)
    up = F.interpolate(up[..., : resized_hw[0], : resized_hw[1]], size=ori_hw, mode="bilinear", align_corners=False)
    return up[:, 0].sigmoid() > MASK_THRESHOLD


def gt_prompts(mode: str, masks: Tensor, input_hw: tuple[int, int], ori_hw: tuple[int, int],
               generator: torch.Generator | None = None) -> Tensor:
    """``(P, 1, 2)`` points in the input frame for GT ``(P, H, W)`` masks: ``center_point`` or ``point`` on the
    masks resized nearest to the input frame ``input_hw`` (a mask lost by the resize: on the original, scaled)."""
    small = F.interpolate(masks[:, None].float(), input_hw, mode="nearest")[:, 0] > 0.5
    lost = ~small.flatten(1).any(1)
    fn = center_points if mode == "center_point" else (lambda m: random_points(m, 1, generator))
    xy = torch.zeros((masks.shape[0], 1, 2))
    if (~lost).any():
        xy[~lost] = fn(small[~lost])
    if lost.any():
        xy[lost] = ResizeLongestSide(max(input_hw)).apply_coords(fn(masks[lost]), ori_hw)
    return xy


class GTPromptMixin:
    """The per-image GT instance selection shared by OVSAM and the SAM + CLIP baselines (non-crowd, non-empty,
    evaluated classes; at most ``max_prompts`` drawn without replacement, seeded by image id)."""

    seed: int
    max_prompts: int | None
    evaluated: Tensor

    def _generator(self, image_id: Any) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + int(image_id))

    def _instances(self, sample: DetSample, ori_hw: tuple[int, int],
                   g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``(masks (P, H, W) bool, boxes (P, 4) xyxy, labels (P,))`` of the instances to prompt."""
        gt = sample.gt
        if gt is None or gt.masks is None:
            raise ValueError(f"image {sample.meta.image_id}: OVSAM evaluation needs GT masks (dataset with masks)")
        masks = gt.masks[:, : ori_hw[0], : ori_hw[1]].cpu().bool()  # the collate pads masks with the batch
        labels = gt.labels.cpu().long()
        keep = (~gt.iscrowd.cpu().bool()) & masks.flatten(1).any(1) & self.evaluated[labels]
        idx = keep.nonzero().flatten()
        if self.max_prompts is not None and idx.numel() > self.max_prompts:
            idx = idx[torch.randperm(idx.numel(), generator=g)[: self.max_prompts]].sort().values
        return masks[idx], gt.boxes.cpu()[idx].float(), labels[idx]


class OVSAMEvaluator(GTPromptMixin, BaseModel):
    """CLIP2SAM evaluated with GT box / point prompts or a detector's boxes (module docstring).

    Args:
        model: the :class:`CLIP2SAM` (:func:`build_clip2sam`; ``forge-test checkpoint=`` loads the trained parts).
        classifier: ``(K, D)`` or ``(K, P, D)`` unit text embeddings of the dataset's classes, label order.
        mode: ``'box'``, ``'center_point'`` or ``'point'``.
        clip_boxes: ``'gt'`` (official) or ``'prompt'``: the boxes of the frozen-CLIP RoIs.
        base_classes, novel_classes, class_names, split_ann_file, novel_frequencies: the split
            (:func:`class_split`); base classes use ``alpha``, the others ``beta``; classes of neither are not
            evaluated and score -1000.
        use_clip: fuse with frozen CLIP (False: the head alone).
        max_prompts, prompt_batch, seed: instances per image (None: all), prompts decoded at once, point seed.
        detections, det_ann_file, det_score_thr, det_max_per_image: a detector's COCO results json (mask AP).
        dataset_name: passed to the metric (``prompt/mIoU_<name>``).
    """

    def __init__(self, model: CLIP2SAM, classifier: Tensor, mode: str = "box", clip_boxes: str = "gt",
                 base_classes: Sequence[int | str] | None = None, novel_classes: Sequence[int | str] | None = None,
                 class_names: Sequence[str] | None = None, split_ann_file: str | None = None,
                 novel_frequencies: Sequence[str] | None = None, use_clip: bool = True, alpha: float = ALPHA,
                 beta: float = BETA, max_prompts: int | None = None, prompt_batch: int = 64, seed: int = 0,
                 detections: str | None = None, det_ann_file: str | None = None, det_score_thr: float = 0.0,
                 det_max_per_image: int | None = 100, dataset_name: str | None = None,
                 data_preprocessor: Mapping | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if mode not in MODES:
            raise ValueError(f"OVSAMEvaluator: mode={mode!r} is invalid; choose one of {', '.join(MODES)}")
        if clip_boxes not in ("gt", "prompt"):
            raise ValueError(f"OVSAMEvaluator: clip_boxes={clip_boxes!r} must be 'gt' or 'prompt'")
        if detections is not None and mode != "box":
            raise ValueError("OVSAMEvaluator: detections= gives box prompts: use mode='box'")
        if detections is not None and not det_ann_file:
            raise ValueError("OVSAMEvaluator: detections= needs det_ann_file= (the GT json: category ids)")
        self.model = model.eval()
        classifier = torch.as_tensor(classifier).float()
        self.register_buffer("classifier", classifier, persistent=False)
        self.base, self.evaluated = class_split(classifier.shape[0], base_classes, novel_classes, class_names,
                                                split_ann_file, novel_frequencies)
        self.mode, self.clip_boxes, self.use_clip = mode, clip_boxes, bool(use_clip)
        self.alpha, self.beta = float(alpha), float(beta)
        self.max_prompts = None if max_prompts is None else int(max_prompts)
        self.prompt_batch, self.seed, self.dataset_name = int(prompt_batch), int(seed), dataset_name
        self.detections = None
        if detections is not None:
            self.detections, _ = load_detections(detections, det_ann_file, det_score_thr, det_max_per_image)

    def adapt_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """An official ``clip2sam_*.pth`` (``fpn_neck.*``, ``mask_decoder.*``, maybe frozen parts) -> our names; the
        frozen parts it lacks are those :func:`build_clip2sam` loaded from the side files (else an error)."""
        if any(k.startswith("model.") for k in state) or not any(k.startswith("fpn_neck.") for k in state):
            return None
        present = {k.split(".", 1)[0] for k in state}
        lacking = [g for g in FROZEN if g not in present and g not in getattr(self.model, "preloaded", ())]
        if lacking:
            from forge.config import ConfigError

            side = {"backbone": "model.model.clip", "neck": "model.model.sam2clip", "pe": "model.model.sam"}
            raise ConfigError(f"the checkpoint has no {', '.join(g + '.*' for g in lacking)} keys: give "
                              + ", ".join(f"{side[g]}=FILE" for g in lacking))
        own = self.model.state_dict()
        out = {f"model.{k}": v for k, v in own.items() if k.split(".", 1)[0] not in present}
        out.update({f"model.{k}": v for k, v in state.items()})
        return out

    def train(self, mode: bool = True) -> OVSAMEvaluator:
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None, mode: str = "predict") -> list:
        if mode != "predict":
            raise NotImplementedError(f"OVSAMEvaluator only evaluates (mode='predict'), got mode={mode!r}")
        if data_samples is None:
            raise ValueError("OVSAMEvaluator needs the data samples (image sizes and ground truth)")
        with torch.no_grad():
            return [self._predict_one(img, s) for img, s in zip(inputs, data_samples)]

    # -- steps
    def _image(self, img: Tensor, sample: DetSample) -> tuple[Tensor, tuple[int, int], tuple[int, int]]:
        """Batch item ``(3, H', W')`` pixels -> model input ``(1, 3, S, S)``, resized ``(h, w)``, original size."""
        meta = sample.meta
        if tuple(meta.img_shape) != tuple(meta.ori_shape):
            raise ValueError(f"image {meta.image_id}: OVSAM evaluation resizes images itself; evaluate without a "
                             f"resizing pipeline (img_shape {meta.img_shape} != ori_shape {meta.ori_shape})")
        h, w = int(meta.ori_shape[0]), int(meta.ori_shape[1])
        pixels = img[:, :h, :w].permute(1, 2, 0).cpu().numpy()
        x, hw = preprocess(np.ascontiguousarray(pixels.clip(0, 255).astype(np.uint8)), self.model.input_size)
        return x.to(self.classifier.device), hw, (h, w)

    def _recognise(self, feats, emb, fpn, boxes: Tensor | None, points: Tensor | None,
                   clip_boxes: Tensor | None) -> tuple[Tensor, Tensor]:
        """One chunk of prompts -> low-res logits ``(N, 1, s, s)`` and fused log-scores ``(N, K + 1)``, the steps
        of :meth:`CLIP2SAM.predict` on features computed once per image."""
        m = self.model
        low = m.decode(emb, boxes, points)
        mask_boxes = masks_to_boxes_exclusive(low[:, 0].sigmoid() > MASK_THRESHOLD) * (m.input_size / low.shape[-1])
        head = m.head_logits(fpn, mask_boxes, self.classifier)
        if not self.use_clip:
            scores = head.log_softmax(-1)
        else:
            cb = clip_boxes if clip_boxes is not None else (boxes if boxes is not None else mask_boxes)
            clip = m.clip_logits(feats[-1], cb, self.classifier)
            small = F.interpolate(low, size=feats[-1].shape[-2:], mode="bilinear", align_corners=False)
            valid = (small > 0).flatten(1).any(dim=1)
            scores = fuse_scores(head, clip, self.base.to(head.device), valid, self.alpha, self.beta)
        scores[:, :-1][:, ~self.evaluated.to(scores.device)] = -1000.0  # official: outside both splits
        return low, scores

    def _chunks(self, n: int) -> list[slice]:
        return [slice(i, min(i + self.prompt_batch, n)) for i in range(0, n, self.prompt_batch)]

    def _predict_one(self, img: Tensor, sample: DetSample) -> Any:
        x, hw, ori_hw = self._image(img, sample)
        feats, emb, fpn = self.model.features(x)
        resize = ResizeLongestSide(self.model.input_size)
        dev = x.device
        g = self._generator(sample.meta.image_id)
        if self.detections is not None:
            boxes, det_scores, _ = self.detections.get(int(sample.meta.image_id),
                                                       (torch.zeros((0, 4)), torch.zeros(0), None))
            masks, labels = [], []
            for c in self._chunks(len(boxes)):
                b = resize.apply_boxes(boxes[c], ori_hw).to(dev)
                low, scores = self._recognise(feats, emb, fpn, b, None, b)
                masks.append(postprocess_masks(low, self.model.input_size, hw, ori_hw).cpu())
                labels.append(top_labels(scores.cpu(), 1)[1][:, 0])
            empty = torch.zeros((0, *ori_hw), dtype=torch.bool)
            return DetSample(meta=sample.meta, gt=sample.gt, pred=Detections(
                boxes=boxes, scores=det_scores, masks=torch.cat(masks) if masks else empty,
                labels=torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)))
        gt_masks, gt_boxes, gt_labels = self._instances(sample, ori_hw, g)
        input_hw = resized_shape(*ori_hw, self.model.input_size)
        pred, scores_all = [], []
        for c in self._chunks(len(gt_labels)):
            box_in = resize.apply_boxes(gt_boxes[c], ori_hw).to(dev)
            points = None
            if self.mode != "box":
                points = gt_prompts(self.mode, gt_masks[c], input_hw, ori_hw, g).to(dev)
            low, scores = self._recognise(feats, emb, fpn, box_in if self.mode == "box" else None, points,
                                          box_in if self.clip_boxes == "gt" else None)
            pred.append(postprocess_masks(low, self.model.input_size, hw, ori_hw).cpu())
            scores_all.append(scores.cpu())
        k = self.classifier.shape[0]
        scores = torch.cat(scores_all) if scores_all else torch.zeros((0, k + 1))
        probs = scores.softmax(-1)[:, :-1]  # the official label rule: softmax, background dropped
        out = dict(pred_masks=torch.cat(pred) if pred else torch.zeros((0, *ori_hw), dtype=torch.bool),
                   gt_masks=gt_masks, gt_labels=gt_labels, pred_labels=probs.argmax(-1), pred_scores=probs,
                   image_id=sample.meta.image_id)
        if self.dataset_name:
            out["dataset"] = self.dataset_name
        return out
