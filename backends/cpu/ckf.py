"""CPU combinatorial Kalman filter stage: seeds -> track candidates (``taas.tracking.ckf``)."""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds, Tracks
from taas.stages.base import Stage
from taas.tracking.ckf import CkfConfig, CkfStats, find_tracks
from taas.tracking.navigation import build_navigation


class CpuCkf(Stage):
    """Measurements + space points + seeds -> track candidates, on the CPU (numpy + numba).

    The navigation (layers and module grids) is built once here, per detector, never per
    event. Output tracks carry the last filtered state and the measurement lists in order
    along the track; overlapping candidates are left to the ambiguity resolution that follows.
    ``last_stats`` holds the counters of the latest event.
    """

    NAME = "ckf"
    BACKEND = "cpu"
    INPUTS = Measurements.tensor_specs() + Spacepoints.tensor_specs() + Seeds.tensor_specs()
    OUTPUTS = Tracks.tensor_specs()

    def __init__(self, detector: Detector, config: CkfConfig | None = None) -> None:
        super().__init__(detector)
        self.config = CkfConfig() if config is None else config
        self.navigation = build_navigation(detector, margin=self.config.navigation_margin)
        self.last_stats: CkfStats | None = None

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tracks, self.last_stats = find_tracks(
            self.detector, self.navigation, Measurements.from_tensors(inputs),
            Spacepoints.from_tensors(inputs), Seeds.from_tensors(inputs), self.config)
        return tracks.to_tensors()
