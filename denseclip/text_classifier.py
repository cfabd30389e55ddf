"""Zero-shot text classifier: one L2-normalised CLIP text embedding per class name (MaskCLIP Sec. 3.2, "prompt
engineering"; also OV-SAM's classifier).

For each class, every template is filled with the name and encoded by CLIP's text tower; the embeddings are
L2-normalised per template, averaged over templates and re-normalised — the official ``zeroshot_classifier``.
Results are cached on disk under a key of (text-tower weights fingerprint, class list, templates), so repeated runs
with the same CLIP, classes and prompts do not re-encode ``C x T`` prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.tokenizer import tokenize

from .clip_loading import LoadedCLIP, clip_fingerprint, wrap_clip
from .templates import resolve_templates

#: Environment variable naming the cache folder (default ``~/.cache/paperforge/denseclip/text``).
CACHE_ENV = "DENSECLIP_CACHE"


def default_cache_dir() -> Path:
    """``$DENSECLIP_CACHE``, else ``$XDG_CACHE_HOME/paperforge/denseclip/text`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "paperforge" / "denseclip" / "text"


def parse_class_names(text: str) -> list[str]:
    """``"sky, tree,road"`` -> ``["sky", "tree", "road"]``; empty or repeated names raise naming them."""
    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(f"class list {text!r} has an empty name (expected comma-separated names)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"class list {text!r} repeats {', '.join(repeated)}")
    return names


def cache_key(fingerprint: str, class_names: Sequence[str], templates: Sequence[str]) -> str:
    """sha256 (hex, 24 chars) of the fingerprint, the ordered class list and the ordered templates."""
    payload = json.dumps({"weights": fingerprint, "classes": list(class_names), "templates": list(templates)},
                         ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


@torch.no_grad()
def encode_class_names(model, class_names: Sequence[str], templates: Sequence[str], context_length: int = 77,
                       batch_size: int = 256) -> torch.Tensor:
    """Text embeddings ``(C, D)`` float32, unit norm, averaged over templates (no cache).

    Args:
        model: open_clip ``CLIP`` (anything with ``encode_text``).
        class_names: ``C`` names.
        templates: ``T`` format strings with one ``{}``.
    """
    device = next(model.parameters()).device
    prompts = [t.format(name) for name in class_names for t in templates]
    tokens = tokenize(prompts, context_length=context_length)
    feats = torch.cat([model.encode_text(tokens[i:i + batch_size].to(device)).float()
                       for i in range(0, len(prompts), batch_size)])
    feats = F.normalize(feats, dim=-1).view(len(class_names), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1).cpu()


def build_text_classifier(clip: LoadedCLIP | torch.nn.Module, class_names: Sequence[str],
                          templates: str | Sequence[str] = "paper", *, cache: bool = True,
                          cache_dir: str | os.PathLike | None = None, batch_size: int = 256) -> torch.Tensor:
    """Class embeddings ``(C, D)`` float32 on CPU, unit L2 norm per row, cached on disk.

    Args:
        clip: a :class:`~denseclip.clip_loading.LoadedCLIP` (or a bare open_clip ``CLIP``).
        class_names: the ``C`` class names, in label order.
        templates: ``"paper"`` (85), ``"imagenet"`` (80), ``"single"``, a template file, or a list of templates.
        cache: read/write the on-disk cache (``False``: always encode, write nothing).
        cache_dir: cache folder (default :func:`default_cache_dir`).
    """
    loaded = clip if isinstance(clip, LoadedCLIP) else wrap_clip(clip)
    names = list(class_names)
    if not names:
        raise ValueError("no class names given")
    tmpl = resolve_templates(templates)
    path = None
    if cache:
        key = cache_key(loaded.fingerprint() if isinstance(clip, LoadedCLIP) else clip_fingerprint(loaded.model),
                        names, tmpl)
        path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = path / f"{key}.pt"
        if path.is_file():
            try:
                hit = torch.load(path, map_location="cpu", weights_only=True)
                if hit.get("classes") == names and hit.get("templates") == tmpl:
                    return hit["embeddings"].float()
            except Exception:  # a corrupt or foreign file is recomputed and overwritten
                pass
    emb = encode_class_names(loaded.model, names, tmpl, context_length=loaded.context_length, batch_size=batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"embeddings": emb, "classes": names, "templates": tmpl}, tmp)
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    return emb
