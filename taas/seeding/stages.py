"""Stage base of triplet seeding (``taas.seeding``): space points -> seeds."""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds
from taas.seeding.config import SeedingConfig
from taas.seeding.shapes import spacepoint_shapes
from taas.seeding.triplets import find_seeds, warmup
from taas.stages.base import RowOrder, Stage


class SeedingStage(Stage):
    """Space points (+ their measurements' cluster sizes) -> seeds.

    ``taas.seeding.find_seeds`` with, when ``config.cluster_shape_cut`` is on, the clusters'
    shapes from the detector's module geometry (``taas.seeding.shapes``). The kernels are
    compiled, or loaded from numba's cache, in the constructor: once per process, not on the
    first event.
    """

    NAME = "seeding"
    INPUTS = Measurements.tensor_specs() + Spacepoints.tensor_specs()
    OUTPUTS = Seeds.tensor_specs()
    ROW_ORDER = RowOrder(("spacepoints",), index_outputs=("seeds.spacepoints",))

    def __init__(self, detector: Detector, config: SeedingConfig | None = None) -> None:
        super().__init__(detector)
        self.config = SeedingConfig() if config is None else config
        warmup(self.config)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spacepoints = Spacepoints.from_tensors(inputs)
        shapes = (spacepoint_shapes(self.detector, Measurements.from_tensors(inputs), spacepoints)
                  if self.config.cluster_shape_cut else None)
        return find_seeds(spacepoints, self.config, shapes=shapes).to_tensors()
