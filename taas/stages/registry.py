"""Which class implements each (stage, backend): one explicit table, no import side effects.

Entries are ``module:Class`` paths so that importing the registry imports no backend (and so no
torch, pyopencl or hls4ml) until a stage is asked for; each names the extras it needs
(``taas.optional``), so a missing package is reported before anything is imported.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from taas.errors import TaasError
from taas.optional import require_extras
from taas.stages.base import Stage


class Implementation(NamedTuple):
    """Where a (stage, backend) lives and which extras of ``pyproject.toml`` it needs."""

    target: str  # "module:Class"
    extras: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.target.split(":")[0]


_CPU = ()
_GNN = ("gnn",)
_OPENCL = ("gpu",)
_FPGA = ("fpga",)

#: (stage, backend) -> implementation. Add a line here when a backend implementation lands.
IMPLEMENTATIONS: dict[tuple[str, str], Implementation] = {
    ("clustering", "cpu"): Implementation("backends.cpu.clustering:CpuClustering", _CPU),
    ("spacepoints", "cpu"): Implementation("backends.cpu.spacepoints:CpuSpacepoints", _CPU),
    ("seeding", "cpu"): Implementation("backends.cpu.seeding:CpuSeeding", _CPU),
    ("ckf", "cpu"): Implementation("backends.cpu.ckf:CpuCkf", _CPU),
    ("ambiguity", "cpu"): Implementation("backends.cpu.ambiguity:CpuAmbiguityResolution", _CPU),
    ("ambiguity", "gpu"): Implementation("backends.gpu.ambiguity:GpuAmbiguityResolution", _GNN),
    ("track_fit", "cpu"): Implementation("backends.cpu.track_fit:CpuTrackFit", _CPU),
    ("track_fit", "gpu"): Implementation("backends.gpu.track_fit:GpuTrackFit", _GNN),
    ("clustering", "gpu"): Implementation("backends.gpu.clustering:GpuClustering", _OPENCL),
    ("spacepoints", "gpu"): Implementation("backends.gpu.spacepoints:GpuSpacepoints", _OPENCL),
    ("clustering", "fpga"): Implementation("backends.fpga.clustering:FpgaClustering", _FPGA),
    ("spacepoints", "fpga"): Implementation("backends.fpga.spacepoints:FpgaSpacepoints",
                                            _FPGA),
    ("graph_construction", "cpu"): Implementation(
        "backends.cpu.graph_construction:CpuGraphConstruction", _GNN),
    ("graph_construction", "gpu"): Implementation(
        "backends.gpu.graph_construction:GpuGraphConstruction", _GNN),
    ("edge_classification", "cpu"): Implementation(
        "backends.cpu.edge_classification:CpuEdgeClassification", _GNN),
    ("edge_classification", "gpu"): Implementation(
        "backends.gpu.edge_classification:GpuEdgeClassification", _GNN),
    ("graph_construction", "fpga"): Implementation(
        "backends.fpga.graph_construction:FpgaGraphConstruction", (*_GNN, *_FPGA)),
    ("edge_classification", "fpga"): Implementation(
        "backends.fpga.edge_classification:FpgaEdgeClassification", (*_GNN, *_FPGA)),
    ("track_building", "cpu"): Implementation(
        "backends.cpu.track_building:CpuTrackBuilding", _GNN),
    ("track_building", "gpu"): Implementation(
        "backends.gpu.track_building:GpuTrackBuilding", _GNN),
    ("prototrack_seeding", "cpu"): Implementation(
        "backends.cpu.prototrack_seeding:CpuPrototrackSeeding", _CPU),
    ("prototrack_seeding", "gpu"): Implementation(
        "backends.gpu.prototrack_seeding:GpuPrototrackSeeding", _GNN),
    ("prototrack_ckf", "cpu"): Implementation(
        "backends.cpu.prototrack_ckf:CpuPrototrackCkf", _CPU),
    ("prototrack_ckf", "gpu"): Implementation(
        "backends.gpu.prototrack_ckf:GpuPrototrackCkf", _GNN),
    ("ckf", "gpu"): Implementation("backends.gpu.ckf:GpuCkf", _GNN),
}


class UnknownStageError(TaasError, LookupError):
    """Asked for a (stage, backend) that has no implementation; lists what exists."""


def available() -> list[tuple[str, str]]:
    """Every registered (stage, backend), sorted."""
    return sorted(IMPLEMENTATIONS)


def implementation(stage: str, backend: str) -> Implementation:
    """The registry entry of (stage, backend); the error lists the valid choices."""
    try:
        return IMPLEMENTATIONS[(stage, backend)]
    except KeyError:
        choices = ", ".join(f"{s}/{b}" for s, b in available()) or "none"
        raise UnknownStageError(
            f"no implementation of stage {stage!r} on backend {backend!r}; available: {choices}"
        ) from None


def check_installed(stage: str, backend: str) -> None:
    """``MissingExtraError`` (naming the ``pip install taas[...]``) unless the packages of
    (stage, backend) are installed; imports nothing, so a workflow can ask at start."""
    require_extras(implementation(stage, backend).extras, needed_by=f"stage {stage}/{backend}")


def resolve(stage: str, backend: str) -> type[Stage]:
    """The class for (stage, backend); the error lists the valid choices, or names the extra
    to install."""
    check_installed(stage, backend)
    target = implementation(stage, backend).target
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise TypeError(f"{target} is not a Stage subclass")
    return cls
