"""Build SAM ViT-B/L/H, MobileSAM and EdgeSAM by name, and load their official checkpoints.

``build_sam(name, checkpoint)`` with ``name`` in ``MODEL_NAMES``; with ``name=None`` the architecture is read from
the checkpoint's keys. Checkpoints load with every model key present and no unexpected key (for EdgeSAM, keys of
the optional region-proposal head are the only ones skipped, and they are logged); anything else is a
``CheckpointError`` naming the file and the missing / unexpected keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from edgesam.image_encoder import VIT_CONFIGS, ImageEncoderViT
from edgesam.mask_decoder import MaskDecoder
from edgesam.prompt_encoder import PromptEncoder
from edgesam.rep_vit import RepViT
from edgesam.sam import Sam
from edgesam.tiny_vit import TinyViT
from edgesam.transformer import TwoWayTransformer

log = logging.getLogger(__name__)

MODEL_NAMES = ("vit_b", "vit_l", "vit_h", "mobile_sam", "edge_sam")
PROMPT_DIM = 256
# keys an EdgeSAM file may carry that the SAM predictor does not use, and why they are skipped
EDGE_SAM_IGNORED = {
    "fpn.": "FPN of the optional region-proposal head (not part of the SAM model)",
    "rpn_head.": "optional region-proposal head (not part of the SAM model)",
}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose keys do not fit the model."""


def sam_from_encoder(image_encoder: nn.Module, image_size: int = 1024) -> Sam:
    """SAM's prompt encoder and mask decoder (official sizes) around ``image_encoder``, whose output grid is
    ``image_size / 16``."""
    emb = image_size // 16
    prompt_encoder = PromptEncoder(PROMPT_DIM, (emb, emb), (image_size, image_size), mask_in_chans=16)
    transformer = TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, num_heads=8, mlp_dim=2048)
    mask_decoder = MaskDecoder(transformer_dim=PROMPT_DIM, transformer=transformer, num_multimask_outputs=3,
                               iou_head_depth=3, iou_head_hidden_dim=256)
    return Sam(image_encoder, prompt_encoder, mask_decoder)


def build_image_encoder(name: str) -> nn.Module:
    """The image encoder of a released model (1024 input)."""
    if name in VIT_CONFIGS:
        dim, depth, heads, glob = VIT_CONFIGS[name]
        return ImageEncoderViT(img_size=1024, embed_dim=dim, depth=depth, num_heads=heads, global_attn_indexes=glob,
                               window_size=14, out_chans=PROMPT_DIM)
    if name == "mobile_sam":
        return TinyViT(img_size=1024)
    if name == "edge_sam":
        return RepViT(img_size=1024)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a checkpoint file (a raw dict, or one under ``model`` / ``state_dict``; a ``module.``
    prefix of DDP is removed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt / foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_architecture(state: Mapping[str, Tensor], source: str = "state dict") -> str:
    """Model name from the image-encoder keys: RepViT ``features`` -> edge_sam, TinyViT ``layers`` -> mobile_sam,
    ViT ``blocks`` -> vit_b / vit_l / vit_h by width and depth."""
    if "image_encoder.features.0.0.c.weight" in state:
        return "edge_sam"
    if "image_encoder.layers.0.blocks.0.conv1.c.weight" in state:
        return "mobile_sam"
    if "image_encoder.patch_embed.proj.weight" in state:
        width = state["image_encoder.patch_embed.proj.weight"].shape[0]
        depth = len({m.group(1) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
        for name, (dim, d, _, _) in VIT_CONFIGS.items():
            if (dim, d) == (width, depth):
                return name
        raise CheckpointError(f"{source}: a SAM ViT of width {width} and depth {depth}, not one of "
                              f"{', '.join(f'{n} ({c[0]}/{c[1]})' for n, c in VIT_CONFIGS.items())}")
    some = ", ".join(list(state)[:5])
    raise CheckpointError(f"{source}: not a SAM / MobileSAM / EdgeSAM checkpoint (no image_encoder.blocks, "
                          f".layers or .features keys; first keys: {some})")


def _examples(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_sam_state(model: Sam, state: Mapping[str, Tensor], name: str, source: str = "state dict") -> list[str]:
    """Load ``state`` into ``model`` (a ``name`` model) with every model key present and matching in shape.

    Returns the file keys that were skipped (EdgeSAM's region-proposal head only), which are also logged.
    """
    expected = model.state_dict()
    ignored = []
    if name == "edge_sam":
        for key in state:
            reason = next((why for prefix, why in EDGE_SAM_IGNORED.items() if key.startswith(prefix)), None)
            if reason is not None:
                ignored.append(key)
                log.warning("%s: ignoring %s: %s", source, key, reason)
    kept = {k: v for k, v in state.items() if k not in ignored}
    missing = [k for k in expected if k not in kept]
    unexpected = [k for k in kept if k not in expected]
    if missing or unexpected:
        try:
            looks = f" (its keys look like {detect_architecture(state, source)})"
        except CheckpointError:
            looks = ""
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_examples(unexpected)}")
        raise CheckpointError(f"{source} is not a {name} checkpoint{looks}; " + "; ".join(parts))
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}" for k, v in kept.items()
             if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise CheckpointError(f"{source} does not fit {name}: {len(wrong)} keys of another shape: {_examples(wrong)}")
    model.load_state_dict(kept, strict=True)
    return ignored


def build_sam(name: str | None = None, checkpoint: str | Path | None = None) -> Sam:
    """An eval-mode ``Sam`` for ``name`` (``MODEL_NAMES``), with ``checkpoint`` loaded if given; ``name=None``
    takes the architecture from the checkpoint's keys. Works under ``torch.device('meta')`` (without a checkpoint)
    for shape-only builds."""
    state = None
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        if name is None:
            name = detect_architecture(state, str(checkpoint))
    elif name is None:
        raise ValueError("build_sam needs a model name or a checkpoint to read the architecture from")
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    model = sam_from_encoder(build_image_encoder(name), 1024)
    if state is not None:
        load_sam_state(model, state, name, str(checkpoint))
    return model.eval()
