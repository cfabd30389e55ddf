"""EdgeSAM phase 1's initialisation: RepViT-M1's ImageNet classification checkpoint (``repvit_m1_distill_300.pth``
from THU-MIG/RepViT, the first ``repvit_m1`` release) loaded into EdgeSAM's RepViT image encoder.

The file is ``{'model': state_dict}`` of ``repvit_m1(distillation=True)`` (690 tensors; some copies also hold the
optimiser, so only ``'model'`` / ``'state_dict'`` / a raw state dict is read). Mapping, as the official
``training/utils.py:load_pretrained`` does it with ``strict=False`` (names coincide, nothing is renamed):

* ``features.*`` (676 tensors: stem and the 26 blocks) -> ``features.*`` of the encoder, every one required with
  its shape (the official loader would also accept a file that lacks some: a partly loaded backbone is an error here);
* ``classifier.classifier.*`` and ``classifier.classifier_dist.*`` (14: the BatchNorm + linear ImageNet heads of
  DeiT-style distillation) are ignored: the encoder has no classifier, its output is the stride-16 embedding;
* the encoder's ``fuse_stage2``, ``fuse_stage3``, ``neck.*`` (8: EdgeSAM's fusion and SAM's neck) are not in a
  classification file and keep their initialisation;
* anything else in the file is an error naming the file and the keys.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["CLASSIFIER_PREFIXES", "NOT_IN_CLASSIFIER", "convert_classification_state", "load_classification_init",
           "read_classification_file"]

log = logging.getLogger(__name__)

# classification-only keys of the file, and why they are skipped
CLASSIFIER_PREFIXES = {
    "classifier.classifier.": "ImageNet classification head (BN + linear); the SAM encoder has no classifier",
    "classifier.classifier_dist.": "DeiT-style distillation head of the ImageNet training; not part of the encoder",
}
# encoder parts a classification checkpoint cannot hold: they keep their initialisation
NOT_IN_CLASSIFIER = ("fuse_stage2.", "fuse_stage3.", "neck.")


def convert_classification_state(state: dict[str, Tensor], encoder_state: dict[str, Tensor],
                                 source: str = "<state dict>") -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Map a RepViT classification state dict onto an encoder's state dict (module docstring).

    Returns:
        ``(tensors to load, ignored file keys, encoder keys left as initialised)``.

    Raises:
        ValueError: a ``features.*`` key of the encoder missing from the file or of another shape, or a file key
            that is neither a backbone nor a classifier key (the message names ``source`` and the keys).
    """
    ignored = [k for k in state if any(k.startswith(p) for p in CLASSIFIER_PREFIXES)]
    unknown = [k for k in state if k not in ignored and k not in encoder_state]
    wanted = [k for k in encoder_state if not k.startswith(NOT_IN_CLASSIFIER)]
    missing = [k for k in wanted if k not in state]
    shapes = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(encoder_state[k].shape)} in the encoder"
              for k in wanted if k in state and state[k].shape != encoder_state[k].shape]
    if unknown or missing or shapes:
        looks = "an EdgeSAM / SAM file (use student_checkpoint)" if any(
            k.startswith("image_encoder.") for k in state) else f"keys like {list(state)[:3]}"
        raise ValueError(f"{source} is not a RepViT classification checkpoint of this encoder ({looks}): "
                         f"{len(missing)} missing keys {missing[:5]}; {len(shapes)} of another shape {shapes[:3]}; "
                         f"{len(unknown)} unexpected keys {unknown[:5]}")
    kept = [k for k in encoder_state if k.startswith(NOT_IN_CLASSIFIER)]
    return {k: state[k] for k in wanted}, ignored, kept


def read_classification_file(path: str) -> dict[str, Tensor]:
    """The state dict of a classification checkpoint: raw, or under ``model`` / ``state_dict``. A RepViT training
    checkpoint also pickles its ``args`` (an ``argparse.Namespace``): that one class is allowed besides tensors and
    the types :func:`forge.inference.safe_load` accepts (still ``weights_only``: no arbitrary code)."""
    from edgesam.distill.builders import read_state

    try:
        return read_state(path)
    except ValueError as err:
        if "argparse.Namespace" not in str(err):
            raise
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            return {k.removeprefix("module."): v for k, v in obj[wrapper].items() if isinstance(v, Tensor)}
    raise ValueError(f"{path}: a training checkpoint without a 'model' or 'state_dict' entry")


def load_classification_init(encoder: nn.Module, path: str) -> dict[str, list[str]]:
    """Load ``repvit_m1_distill_300.pth`` (or any RepViT classification file of the encoder's architecture) into
    ``encoder`` (an :class:`edgesam.rep_vit.RepViT`, unfused); logs each ignored key with the reason.

    Returns:
        ``{'loaded': [...], 'ignored': [...], 'initialised': [...]}`` key lists.
    """
    state = read_classification_file(path)
    tensors, ignored, kept = convert_classification_state(state, encoder.state_dict(), path)
    encoder.load_state_dict(tensors, strict=False)
    for k in ignored:
        why = next(w for p, w in CLASSIFIER_PREFIXES.items() if k.startswith(p))
        log.info("%s: ignoring %s (%s)", path, k, why)
    log.info("%s: loaded %d encoder keys; %d keys (%s) not in a classification file keep their initialisation",
             path, len(tensors), len(kept), ", ".join(p.rstrip(".") for p in NOT_IN_CLASSIFIER))
    return {"loaded": list(tensors), "ignored": ignored, "initialised": kept}
