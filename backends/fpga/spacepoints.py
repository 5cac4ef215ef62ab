"""FPGA space points: the HLS C++ kernel (``hls/spacepoints.cpp``) in bit-accurate C simulation.

The hook of ``taas.reco.stages.SpacepointStage``: the base validates the module keys and looks
up their rows; ``place`` streams the measurements through the fixed-point kernel (rotation and
CORDIC r / phi / eta, cluster-shape features included; ``backends.fpga.frontend``).
"""

from __future__ import annotations

import numpy as np

from backends.fpga.frontend import DEVICE, EmulationConfig, HlsSpacepoints
from taas.detector.detector import Detector
from taas.edm import Measurements, Spacepoints
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.stages import SpacepointStage
from taas.stages.base import Tolerance


class FpgaSpacepoints(SpacepointStage):
    """Measurements -> space points and features with the HLS kernel (C simulation)."""

    BACKEND = "fpga"
    #: Positions within 3e-5 mm, angles and eta within 1e-5 (fixed point, CORDIC).
    CONFORMANCE_TOLERANCE = Tolerance(rtol=0.0, atol=3e-5)

    def __init__(self, detector: Detector, emulation: EmulationConfig | None = None) -> None:
        super().__init__(detector)
        self.kernel = HlsSpacepoints(detector, emulation or EmulationConfig())

    @property
    def device(self) -> str:
        return DEVICE

    def place(self, rows: np.ndarray, meas: Measurements
              ) -> tuple[Spacepoints, SpacepointFeatures]:
        return self.kernel.place(rows, meas)
