"""DenseCLIP / MaskCLIP ("Extract Free Dense Labels from CLIP", Zhou, Loy, Dai, ECCV 2022).

Public API (also used by ``ovsam``):

* CLIP loading — :func:`load_clip`, :class:`LoadedCLIP`, :data:`CLIP_ARCHITECTURES`, :func:`build_clip`,
  :func:`wrap_clip`, :func:`save_clip`, :class:`CLIPLoadError`;
* text classifier — :func:`build_text_classifier`, :func:`resolve_templates`, :data:`PAPER_TEMPLATES`,
  :func:`parse_class_names`;
* MaskCLIP — :class:`MaskCLIP` (dense features, cosine logits, whole / sliding-window inference, ClearCLIP and
  SCLIP variants), :func:`cosine_logits`, :func:`refine` (prompt denoising, key smoothing).
"""

from .clip_loading import (
    CLIP_ARCHITECTURES,
    CLIPLoadError,
    LoadedCLIP,
    build_clip,
    canonical_arch,
    clip_fingerprint,
    load_clip,
    save_clip,
    wrap_clip,
)
from .maskclip import MaskCLIP, cosine_logits
from .refine import KS_THRESHOLD, PD_THRESHOLD, key_smooth, prompt_denoise, refine
from .templates import PAPER_TEMPLATES, resolve_templates
from .text_classifier import build_text_classifier, parse_class_names

__all__ = [
    "CLIP_ARCHITECTURES", "CLIPLoadError", "KS_THRESHOLD", "LoadedCLIP", "MaskCLIP", "PAPER_TEMPLATES",
    "PD_THRESHOLD", "build_clip", "build_text_classifier", "canonical_arch", "clip_fingerprint", "cosine_logits",
    "key_smooth", "load_clip", "parse_class_names", "prompt_denoise", "refine", "resolve_templates", "save_clip",
    "wrap_clip",
]
