"""CPU edge classification: the interaction GNN with torch on the CPU device.

The stage lives in ``taas.gnn.stages``; this backend only keeps its default device hook.
"""

from __future__ import annotations

from taas.gnn.stages import EdgeClassificationStage, GnnStageConfig

__all__ = ["CpuEdgeClassification", "GnnStageConfig"]


class CpuEdgeClassification(EdgeClassificationStage):
    """Filtered graph -> ``edges.*`` with interaction-GNN scores on the CPU."""

    BACKEND = "cpu"
