"""Open-vocabulary score fusion at inference (the official ``OVSAM.open_voc_inference``).

Both the head's logits and the frozen-CLIP RoI logits (each ``(N, K + 1)``, background last) go through a softmax,
then per class a geometric mean: base classes (and background) ``head^(1 - alpha) * clip^alpha``, the others
``head^(1 - beta) * clip^beta`` (alpha 0.1, beta 0.9: base leans on the trained head, novel on CLIP). The result is
the log of that. A prompt whose predicted mask is empty on the CLIP grid uses the head alone (exponents 0), and with
a base/novel split classes that are neither get -1000.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALPHA = 0.1
BETA = 0.9


def fuse_scores(head_logits: Tensor, clip_logits: Tensor, base: Tensor, valid: Tensor | None = None,
                alpha: float = ALPHA, beta: float = BETA, ignore: Tensor | None = None) -> Tensor:
    """Fused log-scores ``(N, K + 1)``.

    Args:
        head_logits, clip_logits: ``(N, K + 1)`` logits, background last.
        base: ``(K,)`` bool, True for classes seen in training (use ``alpha``).
        valid: ``(N,)`` bool, False where the mask is empty on the CLIP grid (head only); default all True.
        ignore: ``(K,)`` bool, classes outside both splits (-1000), as the official with a base/novel indicator.
    """
    if head_logits.shape != clip_logits.shape:
        raise ValueError(f"head logits {tuple(head_logits.shape)} and CLIP logits {tuple(clip_logits.shape)} differ")
    k = head_logits.shape[-1] - 1
    if base.shape != (k,):
        raise ValueError(f"base mask has shape {tuple(base.shape)}, expected ({k},)")
    seen = torch.cat([base.to(torch.bool), base.new_ones(1, dtype=torch.bool)]).to(head_logits.device)
    q, c = head_logits.softmax(-1), clip_logits.softmax(-1)
    v = torch.ones(q.shape[0], 1, dtype=q.dtype, device=q.device) if valid is None else valid.to(q.dtype)[:, None]
    a = torch.where(seen, torch.as_tensor(alpha, dtype=q.dtype), torch.as_tensor(beta, dtype=q.dtype)) * v
    out = (q ** (1 - a) * c ** a).log()
    if ignore is not None:
        out[:, :-1][:, ignore.to(torch.bool)] = -1000.0
    return out


def top_labels(fused: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """The official label rule: softmax over the fused log-scores, background dropped; top-``k`` (scores, indices)
    per prompt."""
    probs = fused.softmax(-1)[:, :-1]
    return probs.topk(min(k, probs.shape[-1]), dim=-1)
