"""CPU triplet seeding stage: numba grid triplet seeding in the manner of ACTS and traccc."""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Spacepoints
from taas.edm.tracks import Seeds
from taas.seeding import SeedingConfig, find_seeds, warmup
from taas.stages.base import Stage


class CpuSeeding(Stage):
    """Space points -> seeds (``taas.seeding.find_seeds``) on the CPU.

    The detector is not needed (the cuts are geometric in r, z) but kept for the stage
    contract. The kernels are compiled, or loaded from numba's cache, in the constructor:
    once per process, not on the first event.
    """

    NAME = "seeding"
    BACKEND = "cpu"
    INPUTS = Spacepoints.tensor_specs()
    OUTPUTS = Seeds.tensor_specs()

    def __init__(self, detector: Detector, config: SeedingConfig | None = None) -> None:
        super().__init__(detector)
        self.config = SeedingConfig() if config is None else config
        warmup(self.config)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spacepoints = Spacepoints.from_tensors(inputs)
        return find_seeds(spacepoints, self.config).to_tensors()
