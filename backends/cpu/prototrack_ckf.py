"""CPU CKF from proto-track seeds, traccc's finding configuration (``traccc_bridge``)."""

from __future__ import annotations

from traccc_bridge.stages import PrototrackCkfStage


class CpuPrototrackCkf(PrototrackCkfStage):
    """Proto-track seeds -> track candidates on the CPU (numpy + numba)."""

    BACKEND = "cpu"
