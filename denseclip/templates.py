"""Prompt templates for the text classifier.

* ``paper`` — the 85 of MaskCLIP: CLIP's 80 ImageNet templates (open_clip ships them, in OpenAI's order) followed
  by 5 scene templates (``there is a {} in the scene.`` ...), as the official ``prompt_engineering.py`` lists them;
* ``imagenet`` — the 80 alone (the protocol of the later training-free methods);
* ``single`` — ``a photo of a {}.`` (the official ``--no-prompt-eng``);
* any other value is a text file, one template per line, each with one ``{}`` for the class name (blank lines and
  lines starting with ``#`` are skipped).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

#: The 5 templates MaskCLIP appends to the 80 ImageNet ones.
SCENE_TEMPLATES: tuple[str, ...] = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

#: CLIP's 80 ImageNet templates (``"a bad photo of a {}."`` ...), from open_clip's lambdas.
IMAGENET_TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)

#: The paper's 85 (MaskCLIP's ``prompt_templates``).
PAPER_TEMPLATES: tuple[str, ...] = IMAGENET_TEMPLATES + SCENE_TEMPLATES

SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}.",)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "paper": PAPER_TEMPLATES, "imagenet": IMAGENET_TEMPLATES, "single": SINGLE_TEMPLATE,
}


def check_template(template: str, where: str = "template") -> str:
    """A template must hold exactly one ``{}`` (and no other braces ``str.format`` would read)."""
    try:
        filled = template.format("X")
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(f"{where} {template!r} is not a format string with one '{{}}': {err}") from None
    if template.count("{}") != 1 or filled.count("X") < template.count("X") + 1:
        raise ValueError(f"{where} {template!r} must contain '{{}}' exactly once (where the class name goes)")
    return template


def read_template_file(path: str) -> list[str]:
    """Templates of a text file, one per line (``#`` comments and blank lines skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"template file {path!r} not found (or use one of: {', '.join(TEMPLATE_SETS)})")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                out.append(check_template(text, f"{path}:{n}: template"))
    if not out:
        raise ValueError(f"template file {path!r} holds no template")
    return out


def resolve_templates(spec: str | Sequence[str]) -> list[str]:
    """``"paper" | "imagenet" | "single" | FILE`` or an explicit list -> list of templates (each checked)."""
    if isinstance(spec, str):
        if spec in TEMPLATE_SETS:
            return list(TEMPLATE_SETS[spec])
        return read_template_file(spec)
    templates = [check_template(t) for t in spec]
    if not templates:
        raise ValueError("no templates given")
    return templates
