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
