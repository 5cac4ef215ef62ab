"""GPU track building: connected components by label propagation in torch, on CUDA.

Without CUDA it runs on the CPU device when ``config.allow_cpu_fallback`` (the default), and its
``device`` says so. The walk of branched components ("walkthrough") is sequential and runs on
the host with numba; ``device`` names that too.
"""

from __future__ import annotations

import torch

from taas.gnn.track_building import (
    TrackBuildingConfig,
    TrackBuildingStage,
    components_torch,
    cuda_or_fallback,
)

__all__ = ["GpuTrackBuilding", "TrackBuildingConfig"]


class GpuTrackBuilding(TrackBuildingStage):
    """Scored edges + space points -> proto-tracks with torch on the GPU."""

    BACKEND = "gpu"
    components = staticmethod(components_torch)

    def select_device(self) -> tuple[torch.device, str]:
        return cuda_or_fallback(self.config.allow_cpu_fallback)
