"""The package is layered, function-level imports included: key maps (pure functions on names) <- modules <- model
<- checkpoint loading <- command-line tools. A module imports only from its own layer or the ones below, so no
import inside a function can hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "yolact"
LAYERS = [
    {"keymaps", "configs"},  # names and settings: no torch modules
    {"anchors", "assembly", "backbone", "box_coding", "dcn", "fpn", "head", "loss", "maskiou", "matching",
     "postprocess", "preprocess", "protonet"},
    {"model"},
    {"convert"},  # reading checkpoints: official, converted, ours
    {"infer", "export"},
]


def _layer(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def _yolact_imports(path: Path) -> set[str]:
    """Sibling modules imported anywhere in the file (relative or ``yolact.x``), at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "yolact":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("yolact."))
    return found


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set().union(*LAYERS), "place new modules in LAYERS"


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.stem)
def test_imports_go_down_the_layers(path):
    if path.stem == "__init__":
        assert not _yolact_imports(path), "yolact/__init__.py imports nothing (importing a submodule runs it)"
        return
    level = _layer(path.stem)
    up = {m for m in _yolact_imports(path) if _layer(m) > level or (_layer(m) == level and level == 0)}
    assert not up, f"yolact.{path.stem} (layer {level}) imports {sorted(up)} from a layer above (or a sibling key map)"


def test_the_layer_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "keymaps.py"
    f.write_text("def f():\n    from .model import Yolact\n    from yolact import convert\n    import yolact.infer\n")
    assert _yolact_imports(f) == {"model", "convert", "infer"}
