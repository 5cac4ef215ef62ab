"""CPU track building: scipy connected components, torch on the CPU device, numba walk.

The algorithm lives in ``taas.gnn.track_building``; this backend keeps its default hooks.
"""

from __future__ import annotations

from taas.gnn.track_building import TrackBuildingConfig, TrackBuildingStage

__all__ = ["CpuTrackBuilding", "TrackBuildingConfig"]


class CpuTrackBuilding(TrackBuildingStage):
    """Scored edges + space points -> proto-tracks on the CPU."""

    BACKEND = "cpu"
