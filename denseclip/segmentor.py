"""The shared runner's view of MaskCLIP: a frozen :class:`~denseclip.maskclip.MaskCLIP` built from a CLIP file and
class names (:func:`build_maskclip`), wrapped as an mmengine ``BaseModel`` (:class:`MaskCLIPSegmentor`) so that
``forge-test`` evaluates it (mIoU, seen/unseen/hIoU through ``forge.evaluation.semseg.SemSegMetric``) with no
training. ``forge-test experiment=denseclip/maskclip_vit16_voc20 checkpoint=ViT-B-16.pt``: ``checkpoint`` is the
CLIP file itself (OpenAI or open_clip state dict), adapted to the model's names by :meth:`adapt_state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmengine.model import BaseModel
from torch import Tensor

from .clip_loading import LoadedCLIP, load_clip, normalize_clip_keys
from .maskclip import MaskCLIP
from .text_classifier import build_text_classifier

__all__ = ["build_maskclip", "MaskCLIPSegmentor"]


def build_maskclip(clip_path: str | LoadedCLIP, class_names: str | Sequence[str], arch: str | None = None,
                   templates: str | Sequence[str] = "paper", key_smoothing: float = 0.0,
                   prompt_denoising: float = 0.0, key_norm: str = "official", variant: str = "maskclip",
                   protocol: str = "official") -> MaskCLIP:
    """Load the CLIP at ``clip_path`` (expected architecture ``arch``; None = whatever it holds), encode the
    class names (a list, or a set name of :data:`forge.data.semseg.CLASS_SETS`) with ``templates`` (cached on disk)
    and return the frozen MaskCLIP."""
    from forge.data.semseg.classes import resolve_classes

    clip = clip_path if isinstance(clip_path, LoadedCLIP) else load_clip(arch, str(clip_path))
    templates = list(templates) if not isinstance(templates, str) else templates
    emb = build_text_classifier(clip, resolve_classes(class_names), templates)
    return MaskCLIP(clip, emb, variant=variant, protocol=protocol, key_smoothing=key_smoothing,
                    prompt_denoising=prompt_denoising, key_norm=key_norm)


class MaskCLIPSegmentor(BaseModel):
    """``predict``: whole-image (or sliding-window) MaskCLIP logits on the resized input, the unpadded part
    resized bilinearly to the original image, argmax (mmseg's ``whole_inference`` + ``resize`` to ``ori_shape``).

    The data preprocessor must leave pixel values as they are (MaskCLIP normalises with its protocol's values);
    padding is filled with the ImageNet mean colour so that it normalises to 0 as in mmseg.
    """

    def __init__(self, maskclip: MaskCLIP, mode: str = "whole", crop: int = 224, stride: int = 112,
                 data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.maskclip = maskclip
        self.mode, self.crop, self.stride = mode, int(crop), int(stride)

    def adapt_state_dict(self, state: dict) -> dict | None:
        """A CLIP state dict (``visual.*``, text keys ignored) -> ``maskclip.visual.*``; None for this model's own
        checkpoints (``maskclip.*``); anything else raises ``ValueError``."""
        if any(k.startswith("maskclip.") for k in state):
            return None
        state = normalize_clip_keys(state)
        if not any(k.startswith("visual.") for k in state):
            raise ValueError(f"the checkpoint holds neither CLIP weights (visual.*) nor a MaskCLIP model (maskclip.*); "
                             f"its first keys: {sorted(state)[:3]}")
        return {f"maskclip.{k}": v for k, v in state.items() if k.startswith("visual.")}

    def _fill_padding(self, inputs: Tensor, data_samples: Sequence) -> Tensor:
        x = inputs.float().clone()
        mean = self.maskclip.mean.view(1, 3, 1, 1)
        for i, s in enumerate(data_samples):
            h, w = s.meta.img_shape
            x[i, :, h:, :] = mean[0]
            x[i, :, :, w:] = mean[0]
        return x

    def forward(self, inputs: Tensor, data_samples: Sequence | None = None, mode: str = "tensor"):
        if mode == "tensor":
            return self.maskclip(inputs.float(), mode=self.mode, crop=self.crop, stride=self.stride)
        if mode == "predict":
            from .plus.model import predict_at_original

            x = self._fill_padding(inputs, data_samples)
            logits = self.maskclip(x, mode=self.mode, crop=self.crop, stride=self.stride)
            preds = predict_at_original(logits, data_samples)
            return [dict(pred_sem_seg=p, gt_sem_seg=s.ori_gt_sem_seg, img_path=s.meta.file_name)
                    for p, s in zip(preds, data_samples)]
        raise ValueError(f"MaskCLIP is training-free: mode must be 'tensor' or 'predict', got {mode!r}")
