"""CPU triplet seeding stage: numba grid triplet seeding in the manner of ACTS and traccc."""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds
from taas.seeding import SeedingConfig, find_seeds, warmup
from taas.seeding.shapes import spacepoint_shapes
from taas.stages.base import Stage


class CpuSeeding(Stage):
    """Space points (+ their measurements' cluster sizes) -> seeds on the CPU.

    ``taas.seeding.find_seeds`` with, when ``config.cluster_shape_cut`` is on, the clusters'
    shapes from the detector's module geometry (``taas.seeding.shapes``). The kernels are
    compiled, or loaded from numba's cache, in the constructor: once per process, not on the
    first event.
    """

    NAME = "seeding"
    BACKEND = "cpu"
    INPUTS = Measurements.tensor_specs() + Spacepoints.tensor_specs()
    OUTPUTS = Seeds.tensor_specs()

    def __init__(self, detector: Detector, config: SeedingConfig | None = None) -> None:
        super().__init__(detector)
        self.config = SeedingConfig() if config is None else config
        warmup(self.config)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spacepoints = Spacepoints.from_tensors(inputs)
        shapes = (spacepoint_shapes(self.detector, Measurements.from_tensors(inputs), spacepoints)
                  if self.config.cluster_shape_cut else None)
        return find_seeds(spacepoints, self.config, shapes=shapes).to_tensors()
