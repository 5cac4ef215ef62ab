"""FPGA clustering: the HLS C++ kernel (``hls/clustering.cpp``) in bit-accurate C simulation.

The hook of ``taas.reco.stages.ClusteringStage``: the base checks, packs and sorts the cells and
scatters the labels back; ``measure`` streams the sorted cells module by module through the
fixed-point kernel (``backends.fpga.frontend``). Cell sets per cluster and the measurement order
are the CPU stage's; positions agree within the fixed-point resolution.
"""

from __future__ import annotations

import numpy as np

from backends.fpga.frontend import DEVICE, EmulationConfig, HlsClustering
from taas.detector.detector import Detector
from taas.edm import Measurements
from taas.reco.clustering import ClusteringConfig
from taas.reco.stages import ClusteringStage
from taas.stages.base import Tolerance


class FpgaClustering(ClusteringStage):
    """Cells -> clusters -> measurements with the HLS clustering kernel (C simulation)."""

    BACKEND = "fpga"
    #: Integers identical; local coordinates within 1.2e-5 mm (2^-12 of the finest pitch),
    #: variances within 1e-4 relative (the 2^-24 channel^2 LSB against pitch^2/12), charges
    #: within the 2^-24 cell-value LSBs.
    CONFORMANCE_TOLERANCE = Tolerance(rtol=1e-4, atol=1.2e-5)

    def __init__(self, detector: Detector, config: ClusteringConfig | None = None,
                 emulation: EmulationConfig | None = None) -> None:
        super().__init__(detector, config)
        self.kernel = HlsClustering(detector, self.config, emulation or EmulationConfig())

    @property
    def device(self) -> str:
        return DEVICE

    def measure(self, key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, Measurements]:
        return self.kernel.measure(key, value)
