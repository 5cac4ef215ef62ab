"""CPU clustering: the reference hook of ``taas.reco.stages.ClusteringStage`` (numba CCL)."""

from __future__ import annotations

from taas.reco.stages import ClusteringStage


class CpuClustering(ClusteringStage):
    """Cells -> clusters -> measurements with the numba labelling of ``taas.reco.clustering``."""

    BACKEND = "cpu"
