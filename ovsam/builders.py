"""Builders for configs: OVSAM models whose frozen parts come from the official side files (OpenAI CLIP, SAM2CLIP,
SAM), and text classifiers of a dataset's classes.

* :func:`clip_resnet` — the frozen CLIP ResNet backbone from a CLIP file (or untrained, for tests);
* :func:`sam2clip_student` — :class:`~ovsam.model.SAM2CLIPDistill` for distillation: CLIP from its file,
  ``pos_embed`` from SAM ViT-H's ``image_encoder.pos_embed`` (the official ``embedding_path='sam_vit_h'``);
* :func:`build_clip2sam` — :class:`~ovsam.model.CLIP2SAM` with CLIP, SAM2CLIP and SAM's prompt encoder loaded;
* :func:`text_classifier` — ``(K, P, D)`` from a CLIP file's text tower for class names or a COCO / LVIS json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from torch import Tensor

from denseclip import load_clip
from edgesam import CheckpointError
from edgesam.build import read_checkpoint

from .backbone import CLIPResNetBackbone
from .checkpoint import SAM2CLIP_TO_CLIP2SAM, load_groups, load_sam2clip
from .model import CLIP2SAM, SAM2CLIPDistill, clip_backbone
from .vocab import parse_class, vocabulary_classifier

__all__ = ["build_clip2sam", "categories", "category_names", "class_names", "clip_resnet", "sam2clip_student",
           "text_classifier"]


def clip_resnet(clip: str | None = None, arch: str | dict = "RN50x16") -> CLIPResNetBackbone:
    """The frozen CLIP ResNet of a CLIP file (checked to be ``arch`` when that is a name), or untrained ``arch``."""
    if clip is None:
        return clip_backbone(arch)
    return CLIPResNetBackbone(load_clip(arch if isinstance(arch, str) else None, clip).model.visual)


def sam2clip_student(clip: str | None = None, arch: str | dict = "RN50x16", sam: str | None = None,
                     embed_dim: int = 1280, input_size: int = 1024, **kw) -> SAM2CLIPDistill:
    """SAM2CLIP to distil: frozen CLIP of ``clip``, SAM2CLIP whose ``pos_embed`` is ``sam``'s (SAM ViT-H's
    ``image_encoder.pos_embed``; None: zeros, as a model to be loaded from a checkpoint)."""
    model = SAM2CLIPDistill(clip_resnet(clip, arch), embed_dim=embed_dim, input_size=input_size, **kw)
    if sam is not None:
        pos = read_checkpoint(sam).get("image_encoder.pos_embed")
        want = tuple(model.neck_student.pos_embed.shape)
        if pos is None or tuple(pos.shape) != want:
            got = None if pos is None else tuple(pos.shape)
            raise CheckpointError(f"{sam}: image_encoder.pos_embed is {got}, SAM2CLIP needs {want}")
        model.neck_student.pos_embed.copy_(pos)
    return model


def categories(ann_file: str) -> list[dict]:
    """The ``categories`` of a COCO / LVIS json sorted by id (the datasets' contiguous label order)."""
    with open(ann_file) as f:
        cats = json.load(f).get("categories")
    if not isinstance(cats, list) or not cats or not all(isinstance(c, dict) and "id" in c for c in cats):
        raise ValueError(f"{ann_file}: no 'categories' list with ids")
    return sorted(cats, key=lambda c: int(c["id"]))


def build_clip2sam(clip: str | None = None, arch: str | dict = "RN50x16", embed_dim: int = 1280,
                   input_size: int = 1024, fpn_channels: int = 256, sam2clip: str | None = None,
                   sam: str | None = None, sam2clip_kwargs: dict | None = None) -> CLIP2SAM:
    """A :class:`CLIP2SAM` whose frozen parts come from the official side files.

    Args:
        clip: CLIP weights (OpenAI ``RN50x16.pt`` or a ``denseclip.save_clip`` file) -> ``backbone``; None: an
            untrained CLIP of ``arch`` (its weights must then come from the checkpoint or ``sam2clip``).
        arch: open_clip architecture name or config dict (with ``clip``: the expected architecture, if a name).
        sam2clip: an official ``sam2clip_*.pth`` or a checkpoint of our ``ovsam/sam2clip_*`` runs
            (``student.neck_student.*``) -> ``neck`` (and ``backbone`` when it carries it).
        sam: a SAM checkpoint -> ``pe`` (its ``prompt_encoder.*`` keys).

    The groups loaded here are listed in ``model.preloaded``; :meth:`OVSAMEvaluator.adapt_state_dict` keeps them
    when ``forge-test checkpoint=`` is a file without them (the official ``clip2sam_*.pth`` layout).
    """
    loaded = {"backbone"} if clip is not None else set()
    model = CLIP2SAM(clip_resnet(clip, arch), embed_dim=embed_dim, input_size=input_size, fpn_channels=fpn_channels,
                     sam2clip_kwargs=sam2clip_kwargs)
    if sam2clip is not None:
        state = read_checkpoint(sam2clip)
        if any(k.startswith("student.neck_student.") for k in state):  # our SAM2CLIPDistiller's checkpoint
            state = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
            loaded |= set(load_groups(model, state, ["neck"], ["backbone"], sam2clip, rename=SAM2CLIP_TO_CLIP2SAM))
        else:
            loaded |= set(load_sam2clip(model, sam2clip, into="clip2sam"))
    if sam is not None:
        pe = {"pe." + k[len("prompt_encoder."):]: v for k, v in read_checkpoint(sam).items()
              if k.startswith("prompt_encoder.")}
        loaded |= set(load_groups(model, pe, ["pe"], [], sam))
    model.preloaded = sorted(loaded)
    return model


def category_names(ann_file: str) -> list[str]:
    """The category names of a COCO json in id order (label order), e.g. an evaluator's ``class_names``."""
    return [str(c["name"]) for c in categories(ann_file)]


def class_names(ann_file: str) -> list[list[str]]:
    """The vocabulary of a COCO / LVIS json: one class per category in id order, ``_`` read as a space (LVIS)."""
    return [[str(c["name"]).replace("_", " ")] for c in categories(ann_file)]


def text_classifier(clip: str, classes: Sequence[str | Sequence[str]] | None = None, ann_file: str | None = None,
                    templates: str | Sequence[str] = "paper", cache_dir: str | None = None,
                    cache: bool = True) -> Tensor:
    """``(K, P, D)`` text classifier of the evaluated classes from a CLIP file's text tower.

    Args:
        classes: class names in label order (``"sofa|couch"`` or lists give synonyms); or
        ann_file: take them from a COCO / LVIS json's categories (id order; LVIS ``_`` read as spaces).
    """
    if (classes is None) == (ann_file is None):
        raise ValueError("text_classifier: give classes= or ann_file= (one of them)")
    if ann_file is not None:
        vocab = class_names(ann_file)
    else:
        vocab = [parse_class(c, "classes") if isinstance(c, str) else list(c) for c in classes]
    return vocabulary_classifier(load_clip(None, clip), vocab, templates, cache=cache, cache_dir=cache_dir)
