"""Run-time vocabularies: class names with synonyms -> a cached text classifier ``(K, P, D)``.

A vocabulary is a list of classes; each class is one or more synonyms (``"sofa|couch"`` on the command line, one
class per line in a file). Every synonym is its own prototype (CLIP text embedding averaged over the templates, as
:func:`denseclip.build_text_classifier`), and a class scores its best prototype, as the official classifier's max
over prototypes. Classes with fewer synonyms repeat their first one (same maximum; the official pads likewise per
file). Large vocabularies (20,000+ names) are encoded in chunks of ``chunk`` names, each cached on its own, so
memory stays bounded by one chunk and an interrupted run resumes; progress goes through :mod:`forge.progress`.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from denseclip import build_text_classifier
from forge.progress import Progress

SYNONYM_SEP = "|"


def parse_class(entry: str, where: str = "vocabulary") -> list[str]:
    """``"sofa | couch"`` -> ``["sofa", "couch"]``; an empty synonym raises naming ``where``."""
    names = [n.strip() for n in entry.split(SYNONYM_SEP)]
    if not names or any(not n for n in names):
        raise ValueError(f"{where}: class {entry!r} has an empty name")
    out: list[str] = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def read_vocabulary(spec: str) -> list[list[str]]:
    """A vocabulary from a file (one class per line, ``#`` comments and blank lines skipped) or a comma-separated
    string. Repeated classes (same normalised first name) raise naming them."""
    if os.path.isfile(spec):
        try:
            text = Path(spec).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"vocabulary file {spec!r} is not UTF-8 text: {exc}") from None
        entries = [(f"{spec}:{i}", ln.strip()) for i, ln in enumerate(text.splitlines(), 1)
                   if ln.strip() and not ln.lstrip().startswith("#")]
        if not entries:
            raise ValueError(f"vocabulary file {spec!r} holds no class names")
    else:
        if spec.strip() == "":
            raise ValueError("empty vocabulary (give comma-separated names or a file)")
        entries = [(f"vocabulary {spec!r}", e) for e in spec.split(",")]
    classes = [parse_class(e, where) for where, e in entries]
    seen: dict[str, int] = {}
    for i, c in enumerate(classes):
        key = normalise(c[0])
        if key in seen:
            raise ValueError(f"{entries[i][0]}: class {c[0]!r} repeats class {seen[key] + 1} "
                             f"({classes[seen[key]][0]!r})")
        seen[key] = i
    return classes


def normalise(name: str) -> str:
    """Comparison key of a name: NFKC, lower case, ``_`` / ``-`` / runs of spaces as one space."""
    s = unicodedata.normalize("NFKC", name).lower().replace("_", " ").replace("-", " ")
    return " ".join(s.split())


def merge_vocabularies(vocabularies: Iterable[Sequence[Sequence[str]]]) -> list[list[str]]:
    """Merge e.g. V3Det, LVIS and ImageNet-21k class lists into one de-duplicated list.

    Two classes are one when any of their names agree after :func:`normalise`; the merged class keeps the first
    list's order and first name, and gains the other's synonyms (in order, without repeats). Order of classes: first
    appearance.
    """
    merged: list[list[str]] = []
    index: dict[str, int] = {}
    for vocab in vocabularies:
        for cls in vocab:
            names = list(cls)
            if not names:
                raise ValueError("a class without names in a vocabulary to merge")
            hits = sorted({index[normalise(n)] for n in names if normalise(n) in index})
            if hits:
                target = hits[0]
                for other in hits[1:]:  # this class bridges two earlier ones: fold them together
                    for n in merged[other]:
                        if normalise(n) not in {normalise(m) for m in merged[target]}:
                            merged[target].append(n)
                    merged[other] = []
            else:
                merged.append([])
                target = len(merged) - 1
            for n in names:
                if normalise(n) not in {normalise(m) for m in merged[target]}:
                    merged[target].append(n)
            for n in merged[target]:
                index[normalise(n)] = target
    out = [c for c in merged if c]
    return out


def vocabulary_classifier(clip, classes: Sequence[Sequence[str]], templates: str | Sequence[str] = "paper", *,
                          cache: bool = True, cache_dir: str | os.PathLike | None = None, chunk: int = 1000,
                          batch_size: int = 256, log=None) -> torch.Tensor:
    """Text classifier ``(K, P, D)`` float32 unit rows for ``K`` classes with up to ``P`` synonyms.

    Args:
        clip: :class:`denseclip.LoadedCLIP` or an open_clip ``CLIP``.
        classes: synonyms per class (:func:`read_vocabulary`).
        chunk: names encoded (and cached) per call of :func:`denseclip.build_text_classifier`.
        log: one-line summary callback when no progress bar is drawn.
    """
    if not classes:
        raise ValueError("no classes in the vocabulary")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    names = [n for c in classes for n in c]
    parts = []
    with Progress(total=len(names), desc="text classifier", unit="name", log=log) as bar:
        for i in range(0, len(names), chunk):
            part = names[i:i + chunk]
            parts.append(build_text_classifier(clip, part, templates, cache=cache, cache_dir=cache_dir,
                                               batch_size=batch_size))
            bar.update(len(part))
    flat = torch.cat(parts)
    p = max(len(c) for c in classes)
    out = flat.new_empty(len(classes), p, flat.shape[1])
    j = 0
    for k, c in enumerate(classes):
        out[k, :len(c)] = flat[j:j + len(c)]
        out[k, len(c):] = flat[j]  # pad with the first synonym: the max over prototypes is unchanged
        j += len(c)
    return out
