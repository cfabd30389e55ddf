"""MaskCLIP's two test-time refinements (paper Sec. 3.2), as the official ``refine_output`` applies them:
prompt denoising first, then key smoothing, both at feature resolution.

* **Prompt denoising** (threshold 0.5): ``p = softmax(100 * logits)`` over classes; a class whose confidence is
  below the threshold at *every* position is taken as absent and its logit set to -100 everywhere.
* **Key smoothing** (threshold 1.0): ``p = softmax(100 * logits)`` and ``W = K K^T`` from the key features
  ``K (HW, C_k)``; every position whose top confidence is below the threshold (with 1.0, practically all) gets
  ``p <- W p``. The result is a score map (smoothed probabilities), no longer logits.

Where the code departs from the paper's text: the paper describes cosine similarity between keys; the code
normalises the key matrix with ``F.normalize(k, p=2)`` on a ``(B, HW, C)`` tensor, i.e. over **positions**
(dim 1) — each key *channel* has unit norm across the image — and does not row-normalise ``W``. ``key_norm=
"official"`` (default) does that; ``key_norm="cosine"`` normalises each key vector (the paper's reading).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Thresholds of the official ``*_kspd_*`` configs.
KS_THRESHOLD = 1.0
PD_THRESHOLD = 0.5
#: The softmax temperature (x100) both refinements use.
TEMPERATURE = 100.0
KEY_NORMS = ("official", "cosine")


def prompt_denoise(logits: Tensor, threshold: float = PD_THRESHOLD, temperature: float = TEMPERATURE) -> Tensor:
    """Suppress classes that are nowhere confident.

    Args:
        logits: ``(B, C, H, W)`` cosine logits.
    Returns:
        ``(B, C, H, W)`` copy of ``logits`` with -100 in every position of each class whose maximum (over
        positions) of ``softmax(temperature * logits)`` is below ``threshold``.
    """
    b, c = logits.shape[:2]
    conf = F.softmax(logits * temperature, dim=1).reshape(b, c, -1).amax(dim=-1)  # (B, C)
    absent = (conf < threshold)[:, :, None, None].expand_as(logits)
    return logits.masked_fill(absent, -100.0)


def key_affinity(keys: Tensor, key_norm: str = "official") -> Tensor:
    """``W = K̂ K̂^T`` ``(B, HW, HW)`` from keys ``(B, HW, C_k)``; see the module docstring for ``key_norm``."""
    if key_norm == "official":
        k = F.normalize(keys, p=2, dim=1)  # over positions, as F.normalize(k, p=2) on (B, HW, C) does
    elif key_norm == "cosine":
        k = F.normalize(keys, p=2, dim=-1)  # each key vector: cosine similarity
    else:
        raise ValueError(f"key_norm must be one of {KEY_NORMS}, got {key_norm!r}")
    return k @ k.transpose(-2, -1)


def key_smooth(logits: Tensor, keys: Tensor, threshold: float = KS_THRESHOLD, key_norm: str = "official",
               temperature: float = TEMPERATURE) -> Tensor:
    """Propagate class confidences between positions with similar keys.

    Args:
        logits: ``(B, C, H, W)``.
        keys: ``(B, H*W, C_k)``, positions in row-major order.
    Returns:
        ``(B, C, H, W)`` scores: ``softmax(temperature * logits)``, replaced by ``W @ p`` at positions whose top
        confidence is below ``threshold``.
    """
    b, c, h, w = logits.shape
    if keys.shape[:2] != (b, h * w):
        raise ValueError(f"keys {tuple(keys.shape)} do not match logits {tuple(logits.shape)} (need (B, H*W, C))")
    p = F.softmax(logits * temperature, dim=1).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
    smoothed = key_affinity(keys.to(p.dtype), key_norm) @ p
    low = p.amax(dim=-1, keepdim=True) < threshold
    p = torch.where(low, smoothed, p)
    return p.transpose(1, 2).reshape(b, c, h, w)


def refine(logits: Tensor, keys: Tensor | None, key_smoothing: float = 0.0, prompt_denoising: float = 0.0,
           key_norm: str = "official") -> Tensor:
    """Prompt denoising (if its threshold > 0), then key smoothing (if its threshold > 0 and keys are given).

    Args:
        logits: ``(B, C, H, W)``; keys: ``(B, H*W, C_k)`` or None.
    Returns:
        ``(B, C, H, W)``: logits (neither or only PD) or smoothed probabilities (KS).
    """
    if prompt_denoising > 0:
        logits = prompt_denoise(logits, prompt_denoising)
    if keys is not None and key_smoothing > 0:
        logits = key_smooth(logits, keys, key_smoothing, key_norm)
    return logits
