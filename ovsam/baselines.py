"""The paper's two-stage baselines: SAM (any ``edgesam.Sam``) for the mask, then CLIP for the name.

* image crop — the prompt box cut from the image (``expand`` x its size around its centre, clipped to the image),
  resized to CLIP's input side (bicubic, antialiased), CLIP's own mean / std, ``encode_image``, cosine x 100 with
  the text classifier (zero background column, as :func:`ovsam.classify`);
* feature crop — one CLIP pass over the whole image, RoIAlign of the box on the stride-32 map to the attention-pool
  grid, CLIP's attention pool, cosine x 100 (what :meth:`ovsam.CLIP2SAM.clip_logits` computes).

Harness: :class:`SAMCLIPBaseline` runs either in ``forge-test`` beside :class:`ovsam.evaluate.OVSAMEvaluator`:
SAM's mask for each GT prompt (``edgesam.evaluate.PromptSegmenter``'s modes and mask rule), CLIP's label for the
prompt's **GT box** (as the official OVSAM evaluation's CLIP branch), the same class split and metrics; with
``detections=`` the detector's boxes, scores and SAM's masks, CLIP's labels (mask AP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor
from torchvision.ops import roi_align

from denseclip import load_clip
from edgesam.evaluate import PromptSegmenter
from forge.data.structures import Detections, DetSample

from .backbone import CLIPResNetBackbone
from .evaluate import class_split
from .head import classify
from .model import preprocess

RECOGNITION = ("image_crop", "feature_crop")


def crop_boxes(boxes: Tensor, height: int, width: int, expand: float = 1.0) -> Tensor:
    """``(N, 4)`` xyxy scaled by ``expand`` about their centres, clipped to the image, integer pixel bounds with at
    least one pixel."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * expand / 2
    lo = (c - half).floor().clamp(min=0)
    hi = (c + half).ceil()
    hi = torch.stack([hi[:, 0].clamp(max=width), hi[:, 1].clamp(max=height)], 1)
    return torch.cat([lo, torch.maximum(hi, lo + 1)], 1).long()


@torch.no_grad()
def image_crop_logits(clip, image: Tensor, boxes: Tensor, classifier: Tensor, expand: float = 1.0) -> Tensor:
    """``image (3, H, W)`` uint8 / 0-255, ``boxes (N, 4)`` in its pixels -> ``(N, K + 1)`` logits.

    ``clip``: open_clip ``CLIP`` (``visual.image_size`` is the crop side)."""
    side = clip.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else int(side)
    mean = torch.tensor(OPENAI_DATASET_MEAN)[:, None, None] * 255
    std = torch.tensor(OPENAI_DATASET_STD)[:, None, None] * 255
    crops = []
    for x0, y0, x1, y1 in crop_boxes(boxes, image.shape[1], image.shape[2], expand).tolist():
        patch = image[:, y0:y1, x0:x1].float()[None]
        patch = F.interpolate(patch, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
        crops.append((patch[0].clamp(0, 255) - mean) / std)
    device = next(clip.parameters()).device
    emb = clip.encode_image(torch.stack(crops).to(device)).float()
    return classify(emb, classifier.to(emb.device))


@torch.no_grad()
def feature_crop_logits(backbone: CLIPResNetBackbone, images: Tensor, boxes: Tensor, classifier: Tensor) -> Tensor:
    """``images (1, 3, S, S)`` normalised as the backbone expects, ``boxes (N, 4)`` in that frame -> logits."""
    c5 = backbone(images)[-1]
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], 1)
    feats = roi_align(c5, rois, backbone.feat_size, spatial_scale=1 / 32.0, sampling_ratio=0, aligned=True)
    return classify(backbone.pool(feats), classifier)


def clip_model(path: str | None = None, arch: str | dict = "RN50x16"):
    """An open_clip ``CLIP`` for the baselines: the weights of ``path`` (OpenAI ``.pt`` or a ``denseclip.save_clip``
    file, checked against ``arch`` when it is a name), or an untrained ``arch`` (tests)."""
    if path is None:
        from denseclip import build_clip

        return build_clip(arch).eval()
    return load_clip(arch if isinstance(arch, str) else None, path).model


class SAMCLIPBaseline(PromptSegmenter):
    """The two-stage baseline: a SAM's mask, then CLIP's name (module docstring).

    Args:
        sam: an ``edgesam`` :class:`~edgesam.sam.Sam` (``forge-test checkpoint=`` loads a SAM release).
        clip: open_clip ``CLIP`` (:func:`clip_model`); ``feature_crop`` needs a ResNet CLIP.
        classifier: ``(K, D)`` or ``(K, P, D)`` text classifier of the dataset's classes.
        recognition: ``'image_crop'`` or ``'feature_crop'``.
        expand: image crops: box scale about its centre (1.0: the box).
        feature_input_size: feature crops: the CLIP input side (OVSAM's 1024, SAM mean / std, as CLIP2SAM's).
        base_classes, novel_classes, class_names, split_ann_file, novel_frequencies: the split
            (:func:`ovsam.evaluate.class_split`): instances of classes in neither are not evaluated.
        **kw: :class:`~edgesam.evaluate.PromptSegmenter` options (mode, max_prompts, detections, ...).
    """

    def __init__(self, sam, clip, classifier: Tensor, recognition: str = "image_crop", expand: float = 1.0,
                 feature_input_size: int = 1024, base_classes: Sequence[int | str] | None = None,
                 novel_classes: Sequence[int | str] | None = None, class_names: Sequence[str] | None = None,
                 split_ann_file: str | None = None, novel_frequencies: Sequence[str] | None = None,
                 data_preprocessor: Mapping | None = None, **kw: Any) -> None:
        super().__init__(sam, data_preprocessor=data_preprocessor, **kw)
        if recognition not in RECOGNITION:
            raise ValueError(f"SAMCLIPBaseline: recognition={recognition!r}; choose one of {', '.join(RECOGNITION)}")
        self.clip = clip.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.backbone = CLIPResNetBackbone(self.clip.visual) if recognition == "feature_crop" else None
        classifier = torch.as_tensor(classifier).float()
        self.register_buffer("classifier", classifier, persistent=False)
        self.recognition, self.expand, self.feature_input_size = recognition, float(expand), int(feature_input_size)
        _, self.evaluated = class_split(classifier.shape[0], base_classes, novel_classes, class_names,
                                        split_ann_file, novel_frequencies)

    def adapt_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """A SAM release (``image_encoder.*``, ...) -> ``sam.*``; CLIP's weights are kept as loaded."""
        out = super().adapt_state_dict(state)
        if out is None:
            return None
        out.update({k: v for k, v in self.state_dict().items() if not k.startswith("sam.")})
        return out

    def train(self, mode: bool = True) -> SAMCLIPBaseline:
        super().train(mode)
        self.clip.eval()
        return self

    def forward(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None, mode: str = "predict"):
        """SAM's outputs (:meth:`PromptSegmenter.forward` on the evaluated classes' instances), then CLIP's names."""
        samples = None if data_samples is None else [self._evaluated_only(s) for s in data_samples]
        outs = super().forward(inputs, samples, mode)
        with torch.no_grad():
            return [self._name(img, out, s) for img, out, s in zip(inputs, outs, samples)]

    def _evaluated_only(self, sample: DetSample) -> DetSample:
        if self.detections is not None or sample.gt is None or bool(self.evaluated.all()):
            return sample
        return DetSample(meta=sample.meta, gt=sample.gt[self.evaluated[sample.gt.labels.cpu().long()]],
                         pred=sample.pred)

    def _prompt_boxes(self, sample: DetSample, h: int, w: int) -> Tensor:
        """The GT boxes of the instances :class:`PromptSegmenter` prompted (same selection and seeded draw)."""
        gt = sample.gt
        keep = (~gt.iscrowd.cpu().bool()) & gt.masks[:, :h, :w].cpu().flatten(1).any(1)
        idx = keep.nonzero().flatten()
        if self.max_prompts is not None and idx.numel() > self.max_prompts:
            g = self._generator(sample.meta.image_id)  # PromptSegmenter's first draw on this generator
            idx = idx[torch.randperm(idx.numel(), generator=g)[: self.max_prompts]].sort().values
        return gt.boxes.cpu()[idx].float()

    def _logits(self, img: Tensor, boxes: Tensor, h: int, w: int) -> Tensor:
        image = img[:, :h, :w].cpu()
        if self.recognition == "image_crop":
            return image_crop_logits(self.clip, image, boxes, self.classifier, self.expand)
        pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy().clip(0, 255).astype(np.uint8))
        x, _ = preprocess(pixels, self.feature_input_size)
        scale = self.feature_input_size / max(h, w)
        dev = self.classifier.device
        return feature_crop_logits(self.backbone, x.to(dev), (boxes * scale).to(dev), self.classifier)

    def _name(self, img: Tensor, out: Any, sample: DetSample) -> Any:
        h, w = int(sample.meta.ori_shape[0]), int(sample.meta.ori_shape[1])
        boxes = out.pred.boxes if isinstance(out, DetSample) else self._prompt_boxes(sample, h, w)
        k = self.classifier.shape[0]
        if len(boxes):
            logits = self._logits(img, boxes, h, w).float().cpu()
            logits[:, :-1][:, ~self.evaluated] = -1000.0
            probs = logits.softmax(-1)[:, :-1]
        else:
            probs = torch.zeros((0, k))
        if isinstance(out, DetSample):
            p = out.pred
            out.pred = Detections(boxes=p.boxes, scores=p.scores, labels=probs.argmax(-1), masks=p.masks)
            return out
        if len(boxes) != len(out["gt_labels"]):
            raise RuntimeError("SAMCLIPBaseline: prompt selection out of step with PromptSegmenter")
        out.update(pred_labels=probs.argmax(-1), pred_scores=probs)
        return out
