"""GPU edge classification: the interaction GNN with torch on CUDA (bf16 autocast).

Without CUDA it runs on the CPU device when ``config.allow_cpu_fallback`` (the default), and its
``device`` says so.
"""

from __future__ import annotations

from taas.gnn.stages import CudaDevice, EdgeClassificationStage, GnnStageConfig

__all__ = ["GnnStageConfig", "GpuEdgeClassification"]


class GpuEdgeClassification(CudaDevice, EdgeClassificationStage):
    """Filtered graph -> ``edges.*`` with interaction-GNN scores with torch on the GPU."""

    BACKEND = "gpu"
