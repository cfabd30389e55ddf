"""The YOLACT / YOLACT++ model (Bolya et al., "YOLACT: Real-time Instance Segmentation", ICCV 2019, Fig. 2;
"YOLACT++: Better Real-time Instance Segmentation", TPAMI 2020).

The model owns its input normalisation: ``data_preprocessor`` (a :class:`forge.models.ImagePreprocessor`, run by
mmengine's ``train_step`` / ``val_step`` / ``test_step``) turns the pixel values datasets yield into the input
:meth:`Yolact.forward` expects: a float tensor ``(B, 3, H, W)`` in **RGB** order normalised as the original --
ResNet backbones ``(x - PIXEL_MEAN) / PIXEL_STD`` on 0-255 values (mean ``(123.68, 116.78, 103.94)``, std
``(58.40, 57.12, 57.38)``, the original's BGR ``MEANS``/``STD`` reordered to RGB), DarkNet-53 ``x / 255``
(:func:`yolact.preprocess.input_normalization`, the default when no preprocessor is given). The original resizes
every image to ``max_size x max_size`` without keeping the aspect ratio (:func:`yolact.preprocess.preprocess_image`);
other resizings work (grids follow the input size) but anchor sizes stay relative to ``max_size``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from torch import Tensor, nn

from forge.config import ConfigError
from forge.data.structures import DetSample, ImageMeta
from forge.precision import float32_region

from .anchors import cached_anchors, level_scales
from .backbone import BACKBONE_REQUIRED, BACKBONE_SCRATCH, build_backbone, missing_backbone_message
from .fpn import FPN
from .head import PredictionHead, SemanticHead
from .keymaps import convert_state_dict, is_official
from .loss import YolactLoss
from .maskiou import MaskIoUNet
from .postprocess import NMS_KINDS, detect_single, to_original
from .preprocess import PIXEL_MEAN, PIXEL_STD, default_preprocessor  # noqa: F401  (PIXEL_*: re-exported)
from .protonet import ProtoNet


class Yolact(BaseModel):
    """YOLACT (``use_maskiou=False``, square anchors) or YOLACT++ (DCN backbone, 3 scales/level, re-scoring).

    Args:
        backbone: ``'resnet50' | 'resnet101' | 'darknet53'``.
        num_classes: foreground classes ``C`` (the class head has ``C + 1`` outputs, background first).
        max_size: the training input size (550); anchor pixel scales are relative to it.
        anchor_scales: base pixel scale per level P3..P7 (24, 48, 96, 192, 384).
        scales_per_octave: scales per level ``s * 2**(j/n)`` (1 for YOLACT, 3 for YOLACT++).
        aspect_ratios: anchor ``w/h`` ratios (1, 1/2, 2).
        square_anchors: the YOLACT square-anchor quirk (needed by the released YOLACT weights).
        dcn_layers, dcn_interval: deformable ``conv2`` placement in ResNet stages (see ``yolact.backbone``).
        use_maskiou: add the YOLACT++ mask re-scoring network.
        num_prototypes: ``k`` (32).
        fpn_channels: pyramid width (256).
        semantic_head: build the training-only semantic segmentation head on P3.
        loss: loss module (``forge/configs/loss/yolact*.yaml``); default ``YolactLoss()``.
        backbone_checkpoint: ImageNet weights for the backbone (torchvision layout for ResNet, the original
            ``darknet53.pth`` for DarkNet), loaded by :meth:`init_weights` (training only; building a model to
            test or run a checkpoint never reads it). ``'required'`` (the paper rows' configs): training stops at
            once, naming the file to get and the override (:data:`yolact.backbone.IMAGENET_FILES`);
            ``'scratch'`` or None: a random backbone, on purpose.
        freeze_bn: freeze backbone BatchNorm (the original does so below 6 images per GPU; with a random backbone
            that freezes random statistics, which :meth:`init_weights` warns about).
        conf_thresh: candidates need a best foreground score above this (0.05).
        nms: ``'fast'`` (per-class Fast NMS, the original), ``'cc_fast'`` (class-agnostic) or ``'standard'``.
        nms_iou: NMS IoU threshold (0.5).
        nms_top_k: Fast NMS candidates per class (200).
        max_det: detections per image (100).
        mask_threshold: binarisation threshold of upsampled masks (0.5).
        crop_masks: crop masks to their box before upsampling.
        rescore_masks: with the re-scoring net, report ``mask_scores = score x predicted IoU``.
        truncate_boxes: integer box coordinates in original pixels, as the original evaluation writes them.
        autocast_dtype: replaced by ``runtime.precision`` (the runner's autocast, :mod:`forge.precision`); only
            None is accepted, anything else raises naming the new key. Under autocast the network runs in reduced
            precision, its outputs are cast back to float32 and the loss and post-processing stay in float32.
        data_preprocessor: the input normalisation (:class:`forge.models.ImagePreprocessor`; the model configs set
            it); None: the released weights' values for ``backbone`` (:func:`yolact.preprocess.input_normalization`).
    """

    def __init__(
        self,
        backbone: str = "resnet101",
        num_classes: int = 80,
        max_size: int = 550,
        anchor_scales: Sequence[float] = (24, 48, 96, 192, 384),
        scales_per_octave: int = 1,
        aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0),
        square_anchors: bool = True,
        dcn_layers: Sequence[int] = (0, 0, 0, 0),
        dcn_interval: int = 1,
        use_maskiou: bool = False,
        num_prototypes: int = 32,
        fpn_channels: int = 256,
        semantic_head: bool = True,
        loss: nn.Module | None = None,
        backbone_checkpoint: str | None = None,
        freeze_bn: bool = False,
        conf_thresh: float = 0.05,
        nms: str = "fast",
        nms_iou: float = 0.5,
        nms_top_k: int = 200,
        max_det: int = 100,
        mask_threshold: float = 0.5,
        crop_masks: bool = True,
        rescore_masks: bool = True,
        truncate_boxes: bool = False,
        autocast_dtype: str | None = None,
        data_preprocessor: dict | nn.Module | None = None,
    ) -> None:
        if data_preprocessor is None:  # official releases are built without one: their own normalisation
            data_preprocessor = default_preprocessor(backbone)
        super().__init__(data_preprocessor=data_preprocessor)
        if nms not in NMS_KINDS:
            raise ValueError(f"Yolact: nms must be one of {NMS_KINDS}, got {nms!r}")
        if len(anchor_scales) != 5:
            raise ValueError(f"Yolact: anchor_scales needs one scale per level P3-P7, got {list(anchor_scales)}")
        self.backbone_name, self.num_classes, self.max_size = backbone, num_classes, max_size
        self.scales = level_scales(anchor_scales, scales_per_octave)
        self.aspect_ratios, self.square_anchors = tuple(aspect_ratios), square_anchors
        self.num_anchors = scales_per_octave * len(aspect_ratios)
        if backbone_checkpoint is not None and (not isinstance(backbone_checkpoint, str) or not backbone_checkpoint):
            raise ValueError(f"Yolact: backbone_checkpoint must be a file, {BACKBONE_SCRATCH!r}, {BACKBONE_REQUIRED!r} "
                             f"or None, got {backbone_checkpoint!r}")
        self.backbone_checkpoint = backbone_checkpoint
        self.backbone = build_backbone(backbone, dcn_layers, dcn_interval, freeze_bn)
        self.fpn = FPN(self.backbone.out_channels, fpn_channels, num_extra=2, relu_outputs=True)
        self.protonet = ProtoNet(fpn_channels, fpn_channels, num_prototypes)
        self.head = PredictionHead(fpn_channels, self.num_anchors, num_classes, num_prototypes)
        self.semantic_head = SemanticHead(fpn_channels, num_classes) if semantic_head else None
        self.maskiou_net = MaskIoUNet(num_classes) if use_maskiou else None
        if loss is not None and "input_size" not in inspect.signature(loss.forward).parameters:
            raise TypeError(f"Yolact: loss must be a YolactLoss-like module (forge/configs/loss/yolact.yaml), got "
                            f"{type(loss).__name__}")
        self.loss_module = loss if loss is not None else YolactLoss()
        self.test_cfg = dict(conf_thresh=conf_thresh, nms=nms, iou_threshold=nms_iou, top_k=nms_top_k,
                             max_det=max_det)
        self.mask_threshold, self.crop_masks = mask_threshold, crop_masks
        self.rescore_masks, self.truncate_boxes = rescore_masks, truncate_boxes
        if autocast_dtype is not None:
            raise ValueError(f"Yolact: autocast_dtype={autocast_dtype!r} was replaced by runtime.precision "
                             f"(fp32 | bf16 | fp16 | auto): remove model.autocast_dtype and set runtime.precision")
        # the ImageNet backbone is read in init_weights(), which the runner calls before training: a model built to
        # test or run a trained checkpoint must not need the backbone file
        self._init_head_weights()

    # ------------------------------------------------------------------ weights
    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor] | None:
        """An official release's state dict (``yolact_base_54_800000.pth`` names) in this model's names, or None
        if ``state`` already uses ours. Used by ``forge-test`` so that official files evaluate directly."""
        if not is_official(state):
            return None
        out = convert_state_dict(state, darknet=self.backbone_name == "darknet53")
        for key, value in self.state_dict().items():  # older releases lack them
            if key.endswith("num_batches_tracked") and key not in out:
                out[key] = torch.zeros_like(value)
        return out

    def _init_head_weights(self) -> None:
        """Xavier-uniform weights and zero biases for every conv outside the backbone (as the original)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith("backbone."):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Initialisation for training (the runner calls it before ``load_from`` / resume): the head initialisation,
        then the ImageNet backbone checkpoint. Raises, naming the file to get, when the config says it is
        ``'required'`` and none was given."""
        self._init_head_weights()
        if self.backbone_checkpoint == BACKBONE_REQUIRED:  # ConfigError: forge-train exits with this one line
            # forge-train removes this attempt's config and log folder, so the fixed command runs as it is
            raise ConfigError(f"Yolact ({self.backbone_name}): {missing_backbone_message(self.backbone_name)}")
        if self.backbone_checkpoint in (None, BACKBONE_SCRATCH):
            if getattr(self.backbone, "freeze_bn", False):
                print_log(f"Yolact: model.freeze_bn is on but the {self.backbone_name} backbone starts from random "
                          "weights (model.backbone_checkpoint=scratch): its BatchNorm keeps its initial statistics "
                          "unless load_from brings trained ones; set model.freeze_bn=false to train it",
                          logger="current", level=logging.WARNING)
            return
        self.backbone.load_imagenet(self.backbone_checkpoint)

    # ------------------------------------------------------------------ network
    def anchors(self, shapes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
        """``(A, 4)`` cxcywh anchors for the pyramid grid ``shapes`` (a bounded LRU cache shared by all models,
        :func:`yolact.anchors.cached_anchors`: new input sizes at inference do not grow memory)."""
        return cached_anchors(shapes, self.scales, self.aspect_ratios, self.max_size, self.square_anchors, device)

    def forward_tensor(self, inputs: Tensor, with_semantic: bool = False) -> dict[str, Tensor]:
        """Raw network outputs (no post-processing).

        Returns:
            ``boxes (B, A, 4)`` SSD deltas, ``cls_logits (B, A, C+1)``, ``coefs (B, A, k)`` (after tanh),
            ``prototypes (B, k, H/4, W/4)`` (after ReLU), ``anchors (A, 4)`` relative cxcywh and, with
            ``with_semantic``, ``semantic (B, C, H/8, W/8)`` logits.
        """
        # the network runs under the caller's autocast (runtime.precision), if any; what follows is float32
        feats = self.fpn(self.backbone(inputs))
        protos = self.protonet(feats[0])
        boxes, logits, coefs = self.head(feats)
        out = {"boxes": boxes, "cls_logits": logits, "coefs": coefs, "prototypes": protos}
        if with_semantic and self.semantic_head is not None:
            out["semantic"] = self.semantic_head(feats[0])
        with float32_region(inputs.device.type):
            out = {k: v.float() for k, v in out.items()}
            out["anchors"] = self.anchors([tuple(f.shape[-2:]) for f in feats], inputs.device)
        return out

    def forward(self, inputs: Tensor | Sequence[Tensor], data_samples: Sequence[DetSample] | None = None,
                mode: str = "tensor"):
        """``mode='tensor'``: dict of raw outputs (:meth:`forward_tensor`); ``'loss'``: dict of named losses;
        ``'predict'``: list of :class:`DetSample` with ``pred`` in original-image coordinates."""
        if not isinstance(inputs, Tensor):
            inputs = torch.stack(list(inputs))
        if mode == "tensor":
            return self.forward_tensor(inputs, with_semantic=self.training)
        if mode == "loss":
            if data_samples is None or any(s.gt is None for s in data_samples):
                raise ValueError("Yolact.forward(mode='loss') needs data_samples with gt")
            for s in data_samples:
                if s.gt.masks is None:
                    raise ValueError(f"Yolact: image {s.meta.image_id} ({s.meta.file_name or 'no file name'}) has no "
                                     f"GT masks; YOLACT trains on instance masks (a box-only dataset config?)")
            out = self.forward_tensor(inputs, with_semantic=True)
            with float32_region(inputs.device.type):
                return self.loss_module(out, [s.gt for s in data_samples], tuple(inputs.shape[-2:]),
                                        self.maskiou_net)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"Yolact.forward: unknown mode {mode!r} (tensor, loss, predict)")

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Sequence[DetSample] | None = None) -> list[DetSample]:
        """Detections per image (see :mod:`yolact.postprocess`)."""
        out = self.forward_tensor(inputs)
        with float32_region(inputs.device.type):
            return self._detect(inputs, out, data_samples)

    def _detect(self, inputs: Tensor, out: dict[str, Tensor],
                data_samples: Sequence[DetSample] | None) -> list[DetSample]:
        probs = F.softmax(out["cls_logits"], -1)
        ih, iw = inputs.shape[-2:]
        if data_samples is None:
            data_samples = [DetSample(meta=ImageMeta(image_id=i, ori_shape=(ih, iw), img_shape=(ih, iw),
                                                     pad_shape=(ih, iw))) for i in range(inputs.shape[0])]
        results = []
        maskiou = self.maskiou_net if self.rescore_masks else None
        for i, sample in enumerate(data_samples):
            det = detect_single(out["boxes"][i], probs[i], out["coefs"][i], out["anchors"], **self.test_cfg)
            pred = to_original(det, out["prototypes"][i], sample.meta, (ih, iw), maskiou, self.crop_masks,
                               self.mask_threshold, self.truncate_boxes)
            results.append(DetSample(meta=sample.meta, gt=sample.gt, pred=pred))
        return results
