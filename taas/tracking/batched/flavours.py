"""Load ``formulas.py`` once per flavour of elementary operations.

``load_formulas(ops, flavour)`` executes the formulas' source as a module of its own, named
``taas.tracking.batched.formulas_<flavour>``, while ``ops_being_loaded`` hands it ``ops``; the
numba flavour (``NUMBA``, built here at import because the CPU chain's kernels call it) and the
torch flavour (``taas.tracking.batched.torch_ops.FORMULAS``, built where torch is imported) are
thus the same statements bound to different operations, not two copies of the physics.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_SOURCE = Path(__file__).with_name("formulas.py")
_LOADING: list[ModuleType] = []


def ops_being_loaded() -> ModuleType:
    """The ``ops`` of the flavour being loaded (called by ``formulas.py`` at its top)."""
    if not _LOADING:
        raise ImportError("taas.tracking.batched.formulas is not imported directly: "
                          "load it with taas.tracking.batched.flavours.load_formulas(ops, name)")
    return _LOADING[-1]


def load_formulas(ops: ModuleType, flavour: str) -> ModuleType:
    """The formulas bound to ``ops`` (loaded once per flavour and process)."""
    name = f"taas.tracking.batched.formulas_{flavour}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    _LOADING.append(ops)
    try:
        spec.loader.exec_module(module)
    finally:
        _LOADING.pop()
    sys.modules[name] = module
    return module


def _numba_formulas() -> ModuleType:
    from taas.tracking.batched import numba_ops

    return load_formulas(numba_ops, "numba")


#: The formulas as numba kernels on one track's scalars and small arrays.
NUMBA = _numba_formulas()
