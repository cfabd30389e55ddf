"""Layout of the evaluator packages: small modules, public shared helpers, no torch outside the metric modules."""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("coco", "lvis", "crowdhuman")
MODULES = sorted(p for pkg in PACKAGES for p in (ROOT / "forge" / "evaluation" / pkg).glob("*.py"))


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_modules_are_small():
    assert MODULES, "no evaluator modules found"
    long = {p.name: n for p in MODULES if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"evaluator modules over 500 lines: {long}"


def test_no_private_names_imported_across_modules():
    bad = []
    for path in [*MODULES, ROOT / "forge" / "cli" / "eval.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("forge."):
                bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad


def test_pure_modules_import_neither_torch_nor_mmengine():
    pure = [_dotted(p) for p in MODULES if p.stem != "metric"]
    code = (
        "import sys, importlib\n"
        f"for name in {pure!r}: importlib.import_module(name)\n"
        "import forge, forge.evaluation\n"
        "print(sorted(m for m in ('torch', 'mmengine') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def _config_targets() -> list[str]:
    targets = set()
    for path in (ROOT / "forge" / "configs").rglob("*.yaml"):
        targets.update(re.findall(r"_target_:\s*(forge\.evaluation\.[\w.]+)", path.read_text()))
    return sorted(targets)


@pytest.mark.parametrize("target", _config_targets())
def test_config_targets_resolve(target):
    from hydra.utils import get_class

    cls = get_class(target)
    assert cls.__name__ == target.rsplit(".", 1)[1]
    assert pickle.loads(pickle.dumps(cls)) is cls  # metrics travel to distributed workers by reference


def test_public_paths_kept():
    import forge.evaluation as ev
    from forge.evaluation.coco import CocoMetric, evaluate_coco
    from forge.evaluation.crowdhuman import CrowdHumanMetric, evaluate
    from forge.evaluation.lvis import LvisMetric, evaluate_lvis

    assert ev.CocoMetric is CocoMetric and ev.evaluate_coco is evaluate_coco and ev.LvisMetric is LvisMetric
    assert ev.evaluate_lvis is evaluate_lvis and ev.CrowdHumanMetric is CrowdHumanMetric
    assert ev.evaluate_crowdhuman is evaluate
    assert issubclass(LvisMetric, CocoMetric)
    with pytest.raises(ImportError, match="cannot import name 'Nope'"):
        from forge.evaluation.coco import Nope  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ev.Nope  # noqa: B018
