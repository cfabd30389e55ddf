"""The shapes demo of OVSAM (``make demo-ovsam``): its data, its colour + shape vocabulary, and the builders its
configs (``forge/configs/{model,experiment}/ovsam/*shapes*.yaml``) instantiate.

* Data: the coloured-shapes scenes of :mod:`forge.data.semseg.synthetic` (the small CLIP of ``make demo-denseclip``
  was trained on their captions) written as a COCO instance set whose classes are colour + shape names
  (``"red circle"`` ... 6 x 5 = 30). Colours are distinct within a scene, so an instance's visible mask is the
  scene's label map equal to its colour; its class comes from the caption part that names that colour.
* Vocabulary split: every class containing a held-out word (e.g. ``orange``, ``cross``) is novel; the training
  annotation file lists only the base classes (novel instances are unannotated there, as COCO's open-vocabulary
  48/17 split), the validation file every class.
* Builders: :func:`sam2clip_distiller` (a CLIP file's ResNet tower + SAM2CLIP sized after the SAM teacher, its
  ``pos_embed`` copied from the teacher's ViT, as the official ``embedding_path``) and :func:`clip2sam_trainer`
  (SAM2CLIP from a distillation checkpoint, prompt encoder and one-token decoder from the SAM, text classifier of
  the training classes from the CLIP's text tower).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from denseclip import build_text_classifier
from denseclip.clip_loading import load_clip
from edgesam.distill.builders import read_state
from edgesam.distill.teacher import Teacher

from .builders import categories, clip_resnet
from .checkpoint import init_from_sam, load_groups, sam2clip_config, sam2clip_state
from .model import CLIP2SAM, SAM2CLIPDistill
from .train import CLIP2SAMTrainer, SAM2CLIPDistiller

__all__ = ["colour_shape_classes", "split_vocabulary", "scene_instances", "write_instance_split",
           "sam2clip_distiller", "clip2sam_model", "clip2sam_trainer", "TEMPLATES"]

#: the captions' language ("a red star and a blue circle")
TEMPLATES = ("a {}",)


def colour_shape_classes() -> list[str]:
    """``"red circle"``, ``"red square"``, ... : every colour of the synthetic scenes with every shape (30)."""
    from forge.data.semseg.synthetic import COLOURS, SHAPES

    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def split_vocabulary(classes: Sequence[str], held_out_words: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(base, novel)``: a class is novel when one of its words is held out. Unknown words are an error."""
    words = {w for c in classes for w in c.split()}
    unknown = sorted(set(held_out_words) - words)
    if unknown:
        raise ValueError(f"held-out words {unknown} occur in no class name (words: {sorted(words)})")
    novel = [c for c in classes if set(c.split()) & set(held_out_words)]
    base = [c for c in classes if c not in novel]
    if not base:
        raise ValueError(f"held-out words {list(held_out_words)} leave no base class")
    return base, novel


def scene_instances(seed: int, index: int, size: int, min_pixels: int = 64) -> tuple[np.ndarray, list]:
    """Scene ``index`` of :func:`forge.data.semseg.synthetic.make_batch` as ``(image (H, W, 3) uint8,
    [(class name, visible mask (H, W) bool), ...])``; an instance left with fewer than ``min_pixels`` visible
    pixels by the shapes painted over it is dropped."""
    from forge.data.semseg.synthetic import COLOURS, render_scene

    img, labels, caption = render_scene(np.random.default_rng([seed, index]), size)
    names = list(COLOURS)
    out = []
    if labels.min() == 255:  # nothing placed ("an empty grey picture")
        return img, out
    for part in caption.split(" and "):
        words = part.split()
        if len(words) != 3 or words[0] != "a" or words[1] not in names:
            raise ValueError(f"scene {index} (seed {seed}): unexpected caption part {part!r} in {caption!r}")
        mask = labels == names.index(words[1])
        if mask.sum() >= min_pixels:
            out.append((f"{words[1]} {words[2]}", mask))
    return img, out


def write_instance_split(out: str, split: str, num_images: int, size: int, seed: int,
                         classes: Sequence[str]) -> str:
    """Write ``out/{split}/*.png`` and ``out/annotations/instances_{split}.json`` (COCO, RLE masks, visible-part
    boxes) with the categories ``classes`` (ids 1..K in that order); instances of other classes are left
    unannotated. Returns the annotation file."""
    import pycocotools.mask as mask_utils
    from PIL import Image

    img_dir, ann_dir = os.path.join(out, split), os.path.join(out, "annotations")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    cat_id = {c: i + 1 for i, c in enumerate(classes)}
    images, anns = [], []
    for i in range(num_images):
        img, insts = scene_instances(seed, i, size)
        name = f"{i:06d}.png"
        Image.fromarray(img).save(os.path.join(img_dir, name))
        images.append(dict(id=i + 1, file_name=name, height=size, width=size))
        for cls, mask in insts:
            if cls not in cat_id:
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=cat_id[cls], segmentation=rle,
                             area=float(mask.sum()), bbox=[x, y, w, h], iscrowd=0))
    path = os.path.join(ann_dir, f"instances_{split}.json")
    with open(path, "w") as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=cat_id[c], name=c, supercategory="shape") for c in classes],
                       info=dict(source="ovsam.shapes.write_instance_split", seed=seed, size=size)), f)
    return path


def sam2clip_distiller(clip_path: str, teacher: Teacher, depth: int = 5, num_heads: int = 3, window_size: int = 8,
                       global_attn_indexes: Sequence[int] = (4,), data_preprocessor=None) -> SAM2CLIPDistiller:
    """SAM2CLIP distillation of ``teacher`` (an :class:`edgesam.distill.Teacher` with a ViT encoder) from the CLIP
    in ``clip_path``: width, input size and output channels are the teacher's, ``pos_embed`` its ViT's."""
    enc = teacher.sam.image_encoder
    if getattr(enc, "pos_embed", None) is None:
        raise ValueError(f"the teacher's encoder ({type(enc).__name__}) has no absolute pos_embed to copy")
    student = SAM2CLIPDistill(clip_resnet(clip_path, None), embed_dim=int(enc.pos_embed.shape[-1]),
                              input_size=teacher.sam.img_size, out_chans=teacher.sam.prompt_encoder.embed_dim,
                              depth=depth, num_heads=num_heads, window_size=window_size,
                              global_attn_indexes=tuple(global_attn_indexes))
    with torch.no_grad():
        student.neck_student.pos_embed.copy_(enc.pos_embed)
    return SAM2CLIPDistiller(student, teacher, data_preprocessor=data_preprocessor)


def _decoder_sizes(sam: nn.Module) -> dict:
    layer = sam.mask_decoder.transformer.layers[0]
    return dict(prompt_dim=sam.prompt_encoder.embed_dim, decoder_heads=layer.self_attn.num_heads,
                decoder_mlp_dim=layer.mlp.lin1.out_features)


def clip2sam_model(clip_path: str, sam2clip_checkpoint: str, sam: Teacher, fpn_channels: int = 64) -> CLIP2SAM:
    """CLIP2SAM sized after the SAM and the SAM2CLIP run: backbone from the CLIP file, ``neck`` from the
    distillation checkpoint, prompt encoder and one-token decoder initialised from the SAM (the training start;
    ``forge-test checkpoint=`` a CLIP2SAM run's file then replaces every tensor: experiment
    ``ovsam/eval_shapes_box``)."""
    state = sam2clip_state(read_state(sam2clip_checkpoint), sam2clip_checkpoint)
    neck = sam2clip_config(state, prefix="neck_student.")
    model = CLIP2SAM(clip_resnet(clip_path, None), embed_dim=neck.pop("embed_dim"),
                     input_size=neck.pop("input_size"), fpn_channels=fpn_channels, sam2clip_kwargs=neck,
                     **_decoder_sizes(sam.sam))
    load_groups(model, {"neck." + k[len("neck_student."):]: v for k, v in state.items()}, ["neck"], [],
                sam2clip_checkpoint)
    init_from_sam(model, sam.sam)
    return model


def clip2sam_trainer(clip_path: str, sam2clip_checkpoint: str, sam: Teacher, classes: Sequence[str] | str,
                     templates: Sequence[str] = TEMPLATES, fpn_channels: int = 64, num_prompts: int = 40,
                     num_points: int = 12544, data_preprocessor=None) -> CLIP2SAMTrainer:
    """CLIP2SAM for training on ``classes`` (label order of the training annotation file).

    Args:
        clip_path: the CLIP file (image tower = backbone, text tower = classifier of ``classes`` x ``templates``).
        sam2clip_checkpoint: a :func:`sam2clip_distiller` run's checkpoint (or an official ``sam2clip_*.pth``).
        sam: the SAM whose prompt encoder (frozen) and mask decoder (initialisation) CLIP2SAM takes (``.sam``).
        classes: the training classes in label order, or a COCO annotation file whose categories they are.
    """
    if isinstance(classes, str):
        classes = [str(c["name"]) for c in categories(classes)]
    model = clip2sam_model(clip_path, sam2clip_checkpoint, sam, fpn_channels)
    classifier = build_text_classifier(load_clip(None, clip_path), list(classes), list(templates), cache=False)
    return CLIP2SAMTrainer(model, classifier, num_prompts=num_prompts, num_points=num_points,
                           data_preprocessor=data_preprocessor)
