"""Loading the official OVSAM checkpoints into :mod:`ovsam.model`, every key accounted for.

``sam2clip_vith_rn50x16.pth`` is the official ``BackboneDistillation`` state (``neck_student.*``, and the frozen
CLIP as ``backbone_student.*`` when the file carries it); ``clip2sam_{coco,lvis}_rn50x16.pth`` the ``CLIP2SAM``
state (``fpn_neck.*``, ``mask_decoder.*``, and possibly the frozen ``backbone.*``, ``neck.*``, ``pe.*``). A group of
keys a file carries must be complete and of the model's shapes; a key of no group, a missing key of a present
group, or a wrong shape is a :class:`edgesam.CheckpointError` naming the file and the keys. Frozen parts a file does
not carry come from elsewhere (a CLIP file, a SAM2CLIP file, SAM's prompt encoder) and are reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from edgesam import CheckpointError
from edgesam.build import read_checkpoint

#: file prefix -> model prefix, for SAM2CLIP files read into CLIP2SAM
SAM2CLIP_TO_CLIP2SAM = {"neck_student.": "neck.", "backbone_student.": "backbone."}


def _group(key: str, groups: Sequence[str]) -> str | None:
    return next((g for g in groups if key.startswith(g + ".")), None)


def load_groups(model: nn.Module, state: Mapping[str, Tensor], required: Sequence[str], optional: Sequence[str],
                source: str = "state dict", rename: Mapping[str, str] | None = None) -> list[str]:
    """Load ``state`` into ``model`` group by group (top-level module names); returns the groups loaded.

    Args:
        required: groups the file must hold completely.
        optional: groups it may hold (then completely).
        rename: file-key prefix -> model-key prefix, applied first.
    """
    if rename:
        renamed = {}
        for k, v in state.items():
            for old, new in rename.items():
                if k.startswith(old):
                    k = new + k[len(old):]
                    break
            renamed[k] = v
        state = renamed
    groups = list(required) + list(optional)
    own = model.state_dict()
    stray = sorted(k for k in state if _group(k, groups) is None)
    if stray:
        raise CheckpointError(f"{source}: {len(stray)} keys belong to no part of the model "
                              f"({', '.join(groups)}): {stray[:6]}")
    present = sorted({_group(k, groups) for k in state})
    absent = [g for g in required if g not in present]
    if absent:
        raise CheckpointError(f"{source} has no {', '.join(absent)}.* keys (expected an OVSAM checkpoint with "
                              f"{', '.join(required)})")
    for g in present:
        want = {k for k in own if k.startswith(g + ".")}
        have = {k for k in state if k.startswith(g + ".")}
        missing, unexpected = sorted(want - have), sorted(have - want)
        wrong = sorted(k for k in want & have if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            parts = [f"{len(missing)} missing {missing[:4]}" * bool(missing),
                     f"{len(unexpected)} unexpected {unexpected[:4]}" * bool(unexpected),
                     "wrong shape " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                for k in wrong[:4]) * bool(wrong)]
            raise CheckpointError(f"{source}: part {g!r} does not fit: " + "; ".join(p for p in parts if p))
        sub = {k[len(g) + 1:]: v for k, v in state.items() if k.startswith(g + ".")}
        getattr(model, g).load_state_dict(sub, strict=True)
    return present


def load_sam2clip(model: nn.Module, path: str | Path, into: str = "sam2clip") -> list[str]:
    """An official ``sam2clip_*.pth`` into a :class:`~ovsam.model.SAM2CLIPDistill` (``into="sam2clip"``) or the
    ``neck`` (+ ``backbone``) of a :class:`~ovsam.model.CLIP2SAM` (``into="clip2sam"``)."""
    state = read_checkpoint(path)
    if into == "sam2clip":
        return load_groups(model, state, ["neck_student"], ["backbone_student"], str(path))
    if into == "clip2sam":
        return load_groups(model, state, ["neck"], ["backbone"], str(path), rename=SAM2CLIP_TO_CLIP2SAM)
    raise ValueError(f"into must be 'sam2clip' or 'clip2sam', got {into!r}")


def load_clip2sam(model: nn.Module, path: str | Path) -> list[str]:
    """An official ``clip2sam_*.pth`` (or one saved by us) into a :class:`~ovsam.model.CLIP2SAM`."""
    return load_groups(model, read_checkpoint(path), ["fpn_neck", "mask_decoder"], ["backbone", "neck", "pe"],
                       str(path))


def sam2clip_config(state: Mapping[str, Tensor], prefix: str = "neck.") -> dict:
    """SAM2CLIP hyper-parameters read from a state dict's shapes: width (``level_encoding``), input size
    (``pos_embed`` grid x 16), depth (blocks), heads (rel-pos table width = head dim), global blocks (rel-pos
    table of the whole grid instead of a window)."""
    try:
        width = state[prefix + "level_encoding.weight"].shape[1]
        grid = state[prefix + "pos_embed"].shape[1]
    except KeyError as exc:
        raise CheckpointError(f"no SAM2CLIP key {exc.args[0]!r} in the state dict") from None
    blocks = sorted({int(k[len(prefix) + 7:].split(".")[0]) for k in state if k.startswith(prefix + "blocks.")})
    if not blocks:
        raise CheckpointError(f"no {prefix}blocks.* keys in the state dict")
    tables = [state[f"{prefix}blocks.{i}.attn.rel_pos_h"].shape for i in blocks]
    return dict(embed_dim=int(width), input_size=int(grid) * 16, depth=len(blocks),
                num_heads=int(width // tables[0][1]),
                global_attn_indexes=tuple(i for i, t in zip(blocks, tables) if t[0] == 2 * grid - 1),
                window_size=next((int(t[0] + 1) // 2 for t in tables if t[0] != 2 * grid - 1), 14))


def sam_decoder_state(sam_decoder: Mapping[str, Tensor], num_mask_tokens: int = 1) -> dict[str, Tensor]:
    """A SAM ``MaskDecoder`` state cut to OVSAM's one-token decoder (the official ``OVSAMHead`` ``sam_pretrain``
    init): the first ``num_mask_tokens`` mask tokens (token 0 = SAM's single-mask output) and their hypernetwork
    MLPs, the transformer and upscaling as they are; the IoU token and head dropped."""
    out = {}
    for k, v in sam_decoder.items():
        if k.startswith(("iou_token.", "iou_prediction_head.")):
            continue
        if k == "mask_tokens.weight":
            v = v[:num_mask_tokens]
        elif k.startswith("output_hypernetworks_mlps.") and int(k.split(".")[1]) >= num_mask_tokens:
            continue
        out[k] = v
    return out


def init_from_sam(model: nn.Module, sam: nn.Module) -> None:
    """CLIP2SAM's SAM parts from a SAM (``edgesam.Sam``): ``pe`` = its prompt encoder (frozen in CLIP2SAM) and
    ``mask_decoder.mask_decoder`` = its mask decoder cut to one token (:func:`sam_decoder_state`), both strict;
    a SAM of other widths is a :class:`CheckpointError` naming the part."""
    parts = {"pe": sam.prompt_encoder.state_dict(),
             "mask_decoder.mask_decoder": sam_decoder_state(sam.mask_decoder.state_dict())}
    for name, state in parts.items():
        target = model.get_submodule(name)
        own = target.state_dict()
        wrong = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if wrong or missing or unexpected:
            raise CheckpointError(f"SAM does not fit CLIP2SAM's {name}: missing {missing[:4]}, unexpected "
                                  f"{unexpected[:4]}, wrong shape {wrong[:4]} (prompt_dim / decoder sizes differ?)")
        target.load_state_dict(state, strict=True)


def sam2clip_state(state: Mapping[str, Tensor], source: str = "state dict") -> dict[str, Tensor]:
    """The ``neck_student.*`` keys of a SAM2CLIP distillation state: an official file's, or a forge-train
    checkpoint of :class:`ovsam.train.SAM2CLIPDistiller` (keys under ``student.``; its teacher's dropped)."""
    for prefix in ("", "student."):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix + "neck_student.")}
        if sub:
            return sub
    raise CheckpointError(f"{source} has no neck_student.* keys (expected a SAM2CLIP distillation checkpoint)")
