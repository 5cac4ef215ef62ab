"""CPU space points: the reference hook of ``taas.reco.stages.SpacepointStage`` (numpy)."""

from __future__ import annotations

from taas.reco.stages import SpacepointStage


class CpuSpacepoints(SpacepointStage):
    """Measurements -> space points and features, vectorised numpy (``taas.reco.spacepoints``)."""

    BACKEND = "cpu"
