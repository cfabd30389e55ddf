"""CLIP weights from a local file, built with open_clip.

Accepted files (the architecture is recognised from the keys and shapes, as OpenAI's ``build_model`` does):

* OpenAI's released ``.pt`` files — TorchScript archives (``torch.jit.save``) — and plain state dicts
  (``torch.save(model.state_dict())`` of the OpenAI ``clip`` package);
* open_clip checkpoints: training checkpoints ``{"epoch", "name", "state_dict": {"module.visual...": ...}}``,
  bare state dicts, ``.safetensors``; a ``CustomTextCLIP`` (text tower under ``text.``) is folded into ``CLIP``
  names;
* our own files for custom (e.g. tiny, demo) CLIPs: ``{"state_dict": ..., "model_cfg": <open_clip config>}``,
  whose ``model_cfg`` (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional ``quick_gelu``) overrides what the
  shapes cannot tell (the number of heads).

The model itself is open_clip's ``CLIP`` (``open_clip.model.CLIP``); nothing of CLIP is re-implemented here.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from open_clip import get_model_config
from open_clip.model import CLIP

#: The architectures of the paper's tables and OpenAI's releases, in open_clip's names.
CLIP_ARCHITECTURES: tuple[str, ...] = ("RN50", "RN101", "RN50x4", "RN50x16", "ViT-B-32", "ViT-B-16", "ViT-L-14")

#: Other spellings users type (OpenAI's ``ViT-B/16``, MaskCLIP's ``ViT16``).
ARCH_ALIASES: dict[str, str] = {
    "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14",
    "ViT32": "ViT-B-32", "ViT16": "ViT-B-16", "ViT14": "ViT-L-14",
}

# Buffers of OpenAI's TorchScript archives that are not parameters of the model.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_TEXT_TOWER_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


class CLIPLoadError(ValueError):
    """A CLIP file that cannot be read, or is not the architecture that was asked for (message names both)."""


@dataclass
class LoadedCLIP:
    """An eval-mode open_clip ``CLIP`` and what is known about it.

    Attributes:
        model: ``open_clip.model.CLIP`` in eval mode, float32 unless asked otherwise.
        arch: one of :data:`CLIP_ARCHITECTURES`, or ``"custom"`` for any other shape.
        model_cfg: the open_clip config it was built from (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        quick_gelu: whether the towers use QuickGELU (OpenAI's weights do).
        source: ``"torchscript"``, ``"state_dict"`` or ``"open_clip"`` (a checkpoint dict with ``state_dict``).
        path: the file it came from (``None`` when built in memory).
    """

    model: CLIP
    arch: str
    model_cfg: dict[str, Any]
    quick_gelu: bool
    source: str
    path: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def is_vit(self) -> bool:
        return not isinstance(self.model_cfg["vision_cfg"]["layers"], (list, tuple))

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    @property
    def context_length(self) -> int:
        return int(self.model_cfg["text_cfg"].get("context_length", 77))

    def fingerprint(self) -> str:
        """:func:`clip_fingerprint` of the model, computed once."""
        if self._fingerprint is None:
            self._fingerprint = clip_fingerprint(self.model)
        return self._fingerprint


def canonical_arch(name: str) -> str:
    """``"ViT-B/16"`` -> ``"ViT-B-16"``; an unknown name raises naming the known ones."""
    name = ARCH_ALIASES.get(name, name)
    if name not in CLIP_ARCHITECTURES:
        raise CLIPLoadError(f"unknown CLIP architecture {name!r}; expected one of {', '.join(CLIP_ARCHITECTURES)}")
    return name


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def clip_config_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The open_clip config (``embed_dim``, ``vision_cfg``, ``text_cfg``) that a CLIP state dict was built from.

    Shapes give everything but the number of heads, taken as ``width // 64`` (every OpenAI and open_clip CLIP of
    :data:`CLIP_ARCHITECTURES`); a custom model with another head width must carry its ``model_cfg``.
    """
    need = ["text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight"]
    vit = "visual.proj" in state
    need += ["visual.conv1.weight", "visual.positional_embedding"] if vit else [
        "visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding", "visual.attnpool.c_proj.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        raise CLIPLoadError(f"not a CLIP state dict: missing {', '.join(missing)}")
    if vit:
        width, _, patch, _ = state["visual.conv1.weight"].shape
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        mlp = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        vision_cfg = dict(image_size=int(patch * grid), layers=_count_blocks(state, "visual.transformer.resblocks."),
                          width=int(width), patch_size=int(patch), head_width=64, mlp_ratio=mlp / width)
        embed_dim = int(state["visual.proj"].shape[1])
    else:
        layers = [_count_blocks(state, f"visual.layer{i}.") for i in range(1, 5)]
        width = int(state["visual.layer1.0.conv1.weight"].shape[0])
        grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision_cfg = dict(image_size=int(32 * grid), layers=layers, width=width, patch_size=None, head_width=64)
        embed_dim = int(state["visual.attnpool.c_proj.weight"].shape[0])
    text_width = int(state["ln_final.weight"].shape[0])
    text_cfg = dict(context_length=int(state["positional_embedding"].shape[0]),
                    vocab_size=int(state["token_embedding.weight"].shape[0]), width=text_width,
                    heads=max(1, text_width // 64), layers=_count_blocks(state, "transformer.resblocks."))
    if "transformer.resblocks.0.mlp.c_fc.weight" in state:
        text_cfg["mlp_ratio"] = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width
    if int(state["text_projection"].shape[1]) != embed_dim:
        raise CLIPLoadError(f"image embedding ({embed_dim}) and text embedding "
                            f"({int(state['text_projection'].shape[1])}) widths differ")
    return dict(embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)
    return a == b


def identify_architecture(model_cfg: Mapping[str, Any]) -> str:
    """The name in :data:`CLIP_ARCHITECTURES` whose open_clip config has these shapes, else ``"custom"``."""
    for name in CLIP_ARCHITECTURES:
        ref = get_model_config(name)
        if ref["embed_dim"] != model_cfg["embed_dim"]:
            continue
        v, rv = model_cfg["vision_cfg"], ref["vision_cfg"]
        t, rt = model_cfg["text_cfg"], ref["text_cfg"]
        if all(_same(v.get(k), rv.get(k)) for k in ("image_size", "layers", "width", "patch_size")) and all(
                _same(t.get(k, d), rt.get(k, d)) for k, d in (("context_length", 77), ("vocab_size", 49408),
                                                               ("width", 512), ("layers", 12))):
            return name
    return "custom"


def describe_config(model_cfg: Mapping[str, Any]) -> str:
    """A short human description: ``ViT (width 768, 12 layers, patch 16, 224 px, embed 512)``."""
    v = model_cfg["vision_cfg"]
    if isinstance(v["layers"], (list, tuple)):
        body = f"ResNet (layers {list(v['layers'])}, width {v['width']}, {v['image_size']} px"
    else:
        body = f"ViT (width {v['width']}, {v['layers']} layers, patch {v['patch_size']}, {v['image_size']} px"
    return f"{body}, embed {model_cfg['embed_dim']})"


def _is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; ``torch.save`` zips have ``data.pkl`` only."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def read_clip_file(path: str) -> tuple[dict[str, torch.Tensor], str, dict[str, Any] | None]:
    """``(state dict in open_clip CLIP names, source kind, model_cfg or None)`` of a CLIP file.

    Raises:
        FileNotFoundError: no such file.
        CLIPLoadError: unreadable, or no CLIP state dict in it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP checkpoint {path!r} not found")
    model_cfg = None
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj: Any = load_file(path)
            source = "open_clip"
        elif _is_torchscript(path):
            obj = {k: v for k, v in torch.jit.load(path, map_location="cpu").state_dict().items()}
            source = "torchscript"
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            source = "state_dict"
    except Exception as err:  # torch/pickle/zip raise many types for a file that is not a checkpoint
        first = (str(err).strip().splitlines() or [""])[0]  # torch's messages run to many lines
        raise CLIPLoadError(f"cannot read CLIP checkpoint {path!r}: {type(err).__name__}: {first}") from err
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        model_cfg = obj.get("model_cfg")
        obj = obj["state_dict"]
        source = "open_clip"
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CLIPLoadError(f"CLIP checkpoint {path!r} holds no state dict of tensors")
    return normalize_clip_keys(obj), source, (dict(model_cfg) if model_cfg is not None else None)


def normalize_clip_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` / ``_orig_mod.`` prefixes (DDP, torch.compile), fold ``CustomTextCLIP``'s ``text.*``
    into ``CLIP`` names and drop OpenAI's non-parameter buffers."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.startswith("text.") and key[5:].startswith(_TEXT_TOWER_KEYS):
            key = key[5:]
        if key in _OPENAI_EXTRA_KEYS or key == "attn_mask":
            continue
        out[key] = value
    return out


def build_clip(model_cfg: Mapping[str, Any] | str, quick_gelu: bool = True, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> CLIP:
    """An untrained open_clip ``CLIP`` of a config dict or one of :data:`CLIP_ARCHITECTURES` (``device="meta"``
    builds it without memory, for shape checks)."""
    cfg = dict(get_model_config(canonical_arch(model_cfg))) if isinstance(model_cfg, str) else dict(model_cfg)
    cfg.pop("quick_gelu", None)
    cfg.pop("custom_text", None)
    with torch.device(device):
        model = CLIP(**cfg, quick_gelu=quick_gelu)
    return model.to(dtype).eval()


def clip_fingerprint(model: CLIP) -> str:
    """sha256 (hex, 16 chars) of the text tower's weights and activation: what a text classifier depends on."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(_TEXT_TOWER_KEYS):
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
    h.update(b"quick_gelu" if _uses_quick_gelu(model) else b"gelu")
    return h.hexdigest()[:16]


def load_clip(name: str | None, path: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              quick_gelu: bool | None = None, model_cfg: Mapping[str, Any] | None = None) -> LoadedCLIP:
    """Load CLIP weights from ``path`` into open_clip's ``CLIP``, strictly (no missing or unexpected key).

    Args:
        name: expected architecture (:data:`CLIP_ARCHITECTURES` or an alias), or ``None`` to accept what the file
            holds (a shape outside the list loads as ``"custom"``).
        path: OpenAI TorchScript archive / state dict, open_clip checkpoint, or ``.safetensors``.
        quick_gelu: activation of both towers; ``None`` = the file's ``model_cfg`` if it has one, else QuickGELU
            (OpenAI's weights, the paper's) unless it is an open_clip training checkpoint.
        model_cfg: open_clip config to build instead of the one read from the shapes.

    Raises:
        FileNotFoundError: no file (the message names the expected architecture).
        CLIPLoadError: unreadable, not CLIP, another architecture than ``name``, or keys that do not fit.
    """
    expected = canonical_arch(name) if name is not None else None
    want = f"expected {expected} weights" if expected else "expected CLIP weights"
    try:
        state, source, file_cfg = read_clip_file(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} ({want}: an OpenAI .pt file or an open_clip checkpoint)") from None
    except CLIPLoadError as err:
        raise CLIPLoadError(f"{err} ({want})") from None
    cfg = dict(model_cfg or file_cfg or clip_config_from_state_dict(state))
    arch = identify_architecture(cfg)
    if expected is not None and arch != expected:
        raise CLIPLoadError(f"CLIP checkpoint {path!r} holds {arch if arch != 'custom' else 'a custom'} "
                            f"{describe_config(cfg)} weights, not the expected {expected}")
    if quick_gelu is None:  # OpenAI's files (archive or plain state dict) were trained with QuickGELU
        quick_gelu = bool(cfg.get("quick_gelu", source in ("torchscript", "state_dict")))
    model = build_clip(cfg, quick_gelu=quick_gelu, device="cpu", dtype=torch.float32)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:5]}" * bool(missing), f"unexpected {unexpected[:5]}" * bool(unexpected),
                 f"wrong shape {wrong[:5]}" * bool(wrong)]
        raise CLIPLoadError(f"CLIP checkpoint {path!r} does not fit {arch} {describe_config(cfg)}: "
                            + "; ".join(p for p in parts if p))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedCLIP(model=model, arch=arch, model_cfg=cfg, quick_gelu=quick_gelu, source=source, path=path)


def clip_config_from_model(model: CLIP) -> dict[str, Any]:
    """:func:`clip_config_from_state_dict` of a built model, with the head counts read from its modules."""
    cfg = clip_config_from_state_dict(normalize_clip_keys(model.state_dict()))
    v = cfg["vision_cfg"]
    if isinstance(v["layers"], list):
        v["head_width"] = v["width"] * 32 // model.visual.attnpool.num_heads
    else:
        v["head_width"] = v["width"] // model.visual.transformer.resblocks[0].attn.num_heads
    cfg["text_cfg"]["heads"] = model.transformer.resblocks[0].attn.num_heads
    return cfg


def _uses_quick_gelu(model: CLIP) -> bool:
    return type(model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def wrap_clip(model: CLIP, model_cfg: Mapping[str, Any] | None = None) -> LoadedCLIP:
    """A :class:`LoadedCLIP` around an in-memory open_clip ``CLIP`` (e.g. one just trained by the demo)."""
    cfg = dict(model_cfg) if model_cfg is not None else clip_config_from_model(model)
    quick = _uses_quick_gelu(model)
    return LoadedCLIP(model=model.eval(), arch=identify_architecture(cfg), model_cfg=cfg, quick_gelu=quick,
                      source="memory", path=None)


def save_clip(model: CLIP, path: str, model_cfg: Mapping[str, Any] | None = None,
              quick_gelu: bool | None = None) -> None:
    """Write ``{"state_dict", "model_cfg"}`` so that :func:`load_clip` rebuilds exactly this model (heads and
    activation included), e.g. for a custom CLIP trained by the demo."""
    cfg = dict(model_cfg) if model_cfg is not None else clip_config_from_model(model)
    cfg["quick_gelu"] = _uses_quick_gelu(model) if quick_gelu is None else bool(quick_gelu)
    torch.save({"state_dict": model.state_dict(), "model_cfg": cfg}, path)
