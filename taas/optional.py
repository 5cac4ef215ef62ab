"""The optional-hardware boundary: torch, pyopencl, hls4ml and tritonclient, imported on demand.

``import taas`` needs none of them. Code that needs one asks here (``import_optional``), and the
stage registry names the extras each backend needs (``taas.stages.registry``), so a missing
package surfaces as one message saying which ``pip install taas[...]`` brings it, at workflow
start or at the first use, never as a ``ModuleNotFoundError`` deep inside a job.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from taas.errors import TaasError

#: Extra of ``pyproject.toml`` -> the top-level modules it installs that taas imports.
EXTRAS: dict[str, tuple[str, ...]] = {
    "gnn": ("torch",),
    "gpu": ("torch", "pyopencl"),
    "fpga": ("hls4ml",),
    "triton": ("tritonclient",),
}


class MissingExtraError(TaasError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        return False


def missing_modules(extra: str) -> list[str]:
    """Modules of ``extra`` that are not installed (without importing any of them)."""
    if extra not in EXTRAS:
        raise TaasError(f"unknown extra {extra!r}; extras: {sorted(EXTRAS)}")
    return [m for m in EXTRAS[extra] if not _installed(m)]


def require_extras(extras: tuple[str, ...] | list[str], needed_by: str) -> None:
    """Raise ``MissingExtraError`` naming ``needed_by`` unless every extra is installed."""
    for extra in extras:
        missing = missing_modules(extra)
        if missing:
            raise MissingExtraError(
                f"{needed_by} needs {', '.join(missing)}: install it with "
                f"pip install 'taas[{extra}]'")


def import_optional(module: str, extra: str) -> ModuleType:
    """``importlib.import_module(module)``, or ``MissingExtraError`` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".", maxsplit=1)[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise  # the package is there but something it imports is not: not ours to hide
        raise MissingExtraError(f"{module} is not installed: install it with "
                                f"pip install 'taas[{extra}]'") from exc
