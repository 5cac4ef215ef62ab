"""Loading a benchmark script as a module: ``benchmarks/`` holds scripts, not a package, so the
tests of its pieces load them by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(relative_path: str, name: str) -> ModuleType:
    """``benchmarks/<relative_path>`` imported as module ``name`` (registered in
    ``sys.modules``, so dataclasses and pickling inside it work)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / relative_path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
