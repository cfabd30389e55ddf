"""Layout rules of the code base: file size, no import cycle inside a package, forge imports no paper package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600
# a paper package may import these other packages besides forge (ovsam builds on edgesam's SAM and denseclip's CLIP)
ALLOWED_PAPER_IMPORTS = {"ovsam": {"edgesam", "denseclip"}}


def _packages() -> list[str]:
    """Top-level packages shipped by pyproject's ``packages.find include`` list (``forge*`` -> ``forge``)."""
    text = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include\s*=\s*\[([^\]]*)\]", text)
    assert include, "pyproject.toml: [tool.setuptools.packages.find] include not found"
    names = [n.strip().strip("\"'").rstrip("*") for n in include.group(1).split(",") if n.strip()]
    return [n for n in names if (ROOT / n / "__init__.py").is_file()]


PACKAGES = _packages()


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``module`` imports, at any depth of the file (function-level imports count), resolved."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known)
    resolved = set()
    for name in found:
        # `import a.b.c` also runs a and a.b: count the deepest module we know
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            resolved.add(name)
    return resolved


def _graph(package: str) -> dict[str, set[str]]:
    mods = _modules(package)
    known = set(mods)
    # a package's __init__ is run by importing any of its submodules, so it is not an edge of the cycle check
    return {m: {t for t in _imports(m, p, known) if not m.startswith(t + ".")} for m, p in mods.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_resolver(tmp_path):
    """Relative imports, ``from pkg import submodule``, function-level imports and ``import a.b`` are all edges."""
    files = {
        "p/__init__.py": "from .a import f\n",
        "p/a.py": "def f():\n    from . import b\n    return b\n",
        "p/b.py": "import os\nfrom .sub import c\n",
        "p/sub/__init__.py": "",
        "p/sub/c.py": "from .. import a\nfrom ..sub import d\nimport p.b.nothing\n",
        "p/sub/d.py": "from p import sub\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    known = {"p", "p.a", "p.b", "p.sub", "p.sub.c", "p.sub.d"}
    got = {m: _imports(m, tmp_path / (m.replace(".", "/") + ("/__init__.py" if m in ("p", "p.sub") else ".py")), known)
           for m in sorted(known)}
    assert got == {"p": {"p.a"}, "p.a": {"p", "p.b"}, "p.b": {"p.sub", "p.sub.c"}, "p.sub": set(),
                   "p.sub.c": {"p", "p.a", "p.sub", "p.sub.d", "p.b"}, "p.sub.d": {"p", "p.sub"}}
    graph = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in got.items()}
    assert _find_cycle(graph) == ["p.a", "p.b", "p.sub.c", "p.a"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_over_the_limit(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them): {long}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_package(package):
    cycle = _find_cycle(_graph(package))
    assert cycle is None, "import cycle (function-level imports included): " + " -> ".join(cycle)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_boundaries(package):
    mods = _modules(package)
    others = set(PACKAGES) - {package}
    allowed = {"forge"} | ALLOWED_PAPER_IMPORTS.get(package, set()) if package != "forge" else set()
    bad = {}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in others and top not in allowed:
                    bad.setdefault(m, set()).add(top)
    assert not bad, f"{package} imports packages it must not: {bad}"
