"""CPU graph construction: embedding + k-d tree FRNN + edge filter, torch on the CPU device.

The stage lives in ``taas.gnn.stages``; this backend only keeps its default device hook.
"""

from __future__ import annotations

from taas.gnn.stages import GnnStageConfig, GraphConstructionStage

__all__ = ["CpuGraphConstruction", "GnnStageConfig"]


class CpuGraphConstruction(GraphConstructionStage):
    """Space points -> filtered graph (``edges.*`` with filter scores) on the CPU."""

    BACKEND = "cpu"
