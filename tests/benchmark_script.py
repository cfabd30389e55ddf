"""Import a script of ``benchmarks/`` (not a package) as a module, for the tests that run its ``main``."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> types.ModuleType:
    """``benchmarks/<name>.py`` executed as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
