"""Which class implements each (stage, backend): one explicit table, no import side effects.

Entries are ``module:Class`` paths so that importing the registry imports no backend (and so no
torch, pyopencl or hls4ml) until a stage is asked for.
"""

from __future__ import annotations

import importlib

from taas.errors import TaasError
from taas.stages.base import Stage

#: (stage, backend) -> "module:Class". Add a line here when a backend implementation lands.
IMPLEMENTATIONS: dict[tuple[str, str], str] = {
    ("clustering", "cpu"): "backends.cpu.clustering:CpuClustering",
    ("spacepoints", "cpu"): "backends.cpu.spacepoints:CpuSpacepoints",
    ("seeding", "cpu"): "backends.cpu.seeding:CpuSeeding",
    ("ckf", "cpu"): "backends.cpu.ckf:CpuCkf",
    ("ambiguity", "cpu"): "backends.cpu.ambiguity:CpuAmbiguityResolution",
    ("track_fit", "cpu"): "backends.cpu.track_fit:CpuTrackFit",
    ("clustering", "gpu"): "backends.gpu.clustering:GpuClustering",
    ("spacepoints", "gpu"): "backends.gpu.spacepoints:GpuSpacepoints",
    ("graph_construction", "cpu"): "backends.cpu.graph_construction:CpuGraphConstruction",
    ("graph_construction", "gpu"): "backends.gpu.graph_construction:GpuGraphConstruction",
    ("edge_classification", "cpu"): "backends.cpu.edge_classification:CpuEdgeClassification",
    ("edge_classification", "gpu"): "backends.gpu.edge_classification:GpuEdgeClassification",
    ("track_building", "cpu"): "backends.cpu.track_building:CpuTrackBuilding",
    ("track_building", "gpu"): "backends.gpu.track_building:GpuTrackBuilding",
}


class UnknownStageError(TaasError, LookupError):
    """Asked for a (stage, backend) that has no implementation; lists what exists."""


def available() -> list[tuple[str, str]]:
    """Every registered (stage, backend), sorted."""
    return sorted(IMPLEMENTATIONS)


def resolve(stage: str, backend: str) -> type[Stage]:
    """The class for (stage, backend); the error lists the valid choices."""
    try:
        target = IMPLEMENTATIONS[(stage, backend)]
    except KeyError:
        choices = ", ".join(f"{s}/{b}" for s, b in available()) or "none"
        raise UnknownStageError(
            f"no implementation of stage {stage!r} on backend {backend!r}; available: {choices}"
        ) from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise TypeError(f"{target} is not a Stage subclass")
    return cls
