"""Models for training and distillation from configs: SAM-style models of any size (the released ones through
``edgesam.build_sam``, small ones for CPU demos), and weight loading from a previous phase's checkpoint.

A small SAM keeps every component of the released one (ViT or RepViT encoder with its neck, the prompt encoder, the
two-way transformer decoder with four mask tokens and the IoU head); only the widths, depths and the input size are
smaller, so the distillation code runs unchanged on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from edgesam.build import build_sam
from edgesam.image_encoder import ImageEncoderViT
from edgesam.mask_decoder import MaskDecoder
from edgesam.prompt_encoder import PromptEncoder
from edgesam.rep_vit import M1_STAGES, RepViT
from edgesam.sam import Sam
from edgesam.transformer import TwoWayTransformer

__all__ = ["vit_encoder", "repvit_encoder", "sam_model", "released_sam", "load_weights", "CHECKPOINT_PREFIXES"]

log = logging.getLogger(__name__)

# where a SAM's keys sit in the checkpoints this package writes: SamPromptTrainer (``sam.``), the distillers
# (``student.``), and released files (none)
CHECKPOINT_PREFIXES = ("", "sam.", "student.")


def vit_encoder(img_size: int = 256, embed_dim: int = 96, depth: int = 4, num_heads: int = 3,
                window_size: int = 8, global_attn_indexes: Sequence[int] = (1, 3), out_chans: int = 128,
                patch_size: int = 16) -> ImageEncoderViT:
    """SAM's ViT image encoder (patch 16, windowed attention with relative positions, global blocks, neck)."""
    return ImageEncoderViT(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, window_size=window_size,
                           global_attn_indexes=tuple(global_attn_indexes), out_chans=out_chans)


def repvit_encoder(img_size: int = 256, stages: Sequence[Sequence] | None = None, out_chans: int = 256,
                   upsample_mode: str = "bicubic") -> RepViT:
    """EdgeSAM's RepViT encoder; ``stages`` = ``[[width, block codes], ...]`` (4 stages; default RepViT-M1)."""
    st = M1_STAGES if stages is None else tuple((int(w), str(codes)) for w, codes in stages)
    if len(st) != 4:
        raise ValueError(f"repvit_encoder: stages must list 4 stages [width, codes], got {stages!r}")
    return RepViT(img_size=img_size, stages=st, upsample_mode=upsample_mode, out_chans=out_chans)


def sam_model(image_encoder: nn.Module, prompt_dim: int = 256, decoder_depth: int = 2, decoder_heads: int = 8,
              decoder_mlp_dim: int = 2048, iou_head_hidden_dim: int = 256, mask_in_chans: int = 16) -> Sam:
    """A SAM around ``image_encoder`` (its ``img_size`` S; output ``(B, prompt_dim, S/16, S/16)``) with a prompt
    encoder and mask decoder of the given sizes (the defaults are SAM's)."""
    size = int(image_encoder.img_size)
    if size % 16:
        raise ValueError(f"sam_model: the encoder input size {size} is not a multiple of 16")
    grid = size // 16
    prompt_encoder = PromptEncoder(prompt_dim, (grid, grid), (size, size), mask_in_chans=mask_in_chans)
    transformer = TwoWayTransformer(depth=decoder_depth, embedding_dim=prompt_dim, num_heads=decoder_heads,
                                    mlp_dim=decoder_mlp_dim)
    decoder = MaskDecoder(transformer_dim=prompt_dim, transformer=transformer, num_multimask_outputs=3,
                          iou_head_depth=3, iou_head_hidden_dim=iou_head_hidden_dim)
    return Sam(image_encoder, prompt_encoder, decoder)


def released_sam(name: str, checkpoint: str | None = None) -> Sam:
    """A released architecture (``vit_b`` ... ``edge_sam``, 1024 input), in training mode, optionally loaded."""
    return build_sam(name, checkpoint).train()


def read_state(path: str) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a raw state dict, or one under ``model`` / ``state_dict`` (mmengine / forge
    checkpoints, read with :func:`forge.inference.safe_load`: no arbitrary unpickling); a DDP ``module.`` prefix
    is removed."""
    from forge.inference import safe_load

    try:
        obj = safe_load(path)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_weights(module: nn.Module, path: str, only: Sequence[str] | None = None) -> list[str]:
    """Load a SAM's weights from ``path`` into ``module`` (a :class:`Sam`).

    The file may be a released SAM / EdgeSAM file or a checkpoint of this package (keys under ``sam.`` or
    ``student.``): the prefix under which the module's keys are found is used. ``only`` restricts loading to the
    keys under these module prefixes (e.g. ``['image_encoder.']`` for a phase-1 encoder); every such key of the
    module must be in the file with its shape.

    Returns:
        the loaded keys. Raises ``ValueError`` naming the file and the missing or mis-shaped keys.
    """
    state = read_state(path)
    own = module.state_dict()
    wanted = [k for k in own if only is None or any(k.startswith(p) for p in only)]
    if not wanted:
        raise ValueError(f"load_weights: the model has no keys under {list(only or [])}")
    best, best_hits = {}, -1
    for prefix in CHECKPOINT_PREFIXES:
        sub = _strip(state, prefix)
        hits = sum(k in sub for k in wanted)
        if hits > best_hits:
            best, best_hits = sub, hits
    missing = [k for k in wanted if k not in best]
    shapes = [f"{k}: {tuple(best[k].shape)} vs {tuple(own[k].shape)}" for k in wanted
              if k in best and best[k].shape != own[k].shape]
    if missing or shapes:
        raise ValueError(f"{path}: does not fit the model ({len(missing)} missing keys: {missing[:5]}; "
                         f"{len(shapes)} of another shape: {shapes[:5]}); keys in the file look like "
                         f"{list(state)[:3]}")
    module.load_state_dict({k: best[k] for k in wanted}, strict=False)
    log.info("loaded %d keys%s from %s", len(wanted), f" under {list(only)}" if only else "", path)
    return wanted
