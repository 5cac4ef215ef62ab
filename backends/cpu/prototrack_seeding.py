"""CPU bridge stage: GNN proto-tracks -> CKF seeds with start parameters (``traccc_bridge``)."""

from __future__ import annotations

from traccc_bridge.stages import PrototrackSeedingStage


class CpuPrototrackSeeding(PrototrackSeedingStage):
    """Proto-tracks -> seeds, start parameters and surface order on the CPU (numpy + numba)."""

    BACKEND = "cpu"
