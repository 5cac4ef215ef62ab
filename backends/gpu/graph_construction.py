"""GPU graph construction: embedding, torch cell-list FRNN and edge filter on CUDA (bf16 autocast).

Without CUDA it runs on the CPU device when ``config.allow_cpu_fallback`` (the default), with the
k-d tree FRNN (faster than the cell list on a CPU, same edges), and its ``device`` says so.
"""

from __future__ import annotations

from taas.gnn.stages import CudaDevice, GnnStageConfig, GraphConstructionStage

__all__ = ["GnnStageConfig", "GpuGraphConstruction"]


class GpuGraphConstruction(CudaDevice, GraphConstructionStage):
    """Space points -> filtered graph (``edges.*`` with filter scores) with torch on the GPU."""

    BACKEND = "gpu"
