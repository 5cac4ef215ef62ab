"""CPU space-point formation: local 2D measurements -> global points plus cluster-shape features.

Every measurement, pixel or strip, is treated as a 2D point on its module plane (w = 0), as in
TrackML: no strip-pair combination. Besides the position (x, y, z, r, phi, eta) the stage emits
the cluster-shape features that GNN graph building consumes (``SpacepointFeatures``), so that the
per-node inputs of every pipeline come from one place. Vectorised numpy throughout.
"""

from __future__ import annotations

import numpy as np

from taas.edm import Measurements, Spacepoints
from taas.reco.cluster_features import SpacepointFeatures, eta_phi, shape_features
from taas.stages.base import Stage


class CpuSpacepoints(Stage):
    """Measurements -> one space point each (row ``i`` from measurement ``i``) and its features."""

    NAME = "spacepoints"
    BACKEND = "cpu"
    INPUTS = Measurements.tensor_specs()
    OUTPUTS = Spacepoints.tensor_specs() + SpacepointFeatures.tensor_specs()

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        meas = Measurements.from_tensors(inputs)
        n = len(meas)
        if n == 0:
            return {**Spacepoints.empty().to_tensors(), **SpacepointFeatures.empty().to_tensors()}
        rows = self.detector.index_of(meas.module_key, column="measurements.module_key")
        xyz = self.detector.local_to_global(rows, meas.local_u, meas.local_v)
        x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        eta, phi = eta_phi(x, y, z)
        points = Spacepoints(measurement_index=np.arange(n), x=x, y=y, z=z, r=np.hypot(x, y),
                             phi=phi, eta=eta)
        m = self.detector.modules
        features = shape_features(
            rotation=self.detector.rotation[rows], thickness=m["thickness"][rows],
            pitch_u=m["pitch_u"][rows], pitch_v=m["pitch_v"][rows], n_cells=meas.n_cells,
            charge=meas.charge, size_u=meas.size_u, size_v=meas.size_v)
        return {**points.to_tensors(), **features.to_tensors()}
