"""Space-point formation: local 2D measurements -> global points plus cluster-shape features.

Every measurement, pixel or strip, is treated as a 2D point on its module plane (w = 0), as in
TrackML: no strip-pair combination. Besides the position (x, y, z, r, phi, eta) the stage emits
the cluster-shape features that GNN graph building consumes (``SpacepointFeatures``), so that the
per-node inputs of every pipeline come from one place. Vectorised numpy throughout; this is the
reference that ``SpacepointStage`` (``taas.reco.stages``) runs on the CPU.
"""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm import Measurements, Spacepoints
from taas.reco.cluster_features import SpacepointFeatures, eta_phi, shape_features


def place_measurements(detector: Detector, rows: np.ndarray, meas: Measurements
                       ) -> tuple[Spacepoints, SpacepointFeatures]:
    """One space point per measurement (row ``i`` from measurement ``i``, on detector row
    ``rows[i]``) and its cluster-shape features."""
    xyz = detector.local_to_global(rows, meas.local_u, meas.local_v)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    eta, phi = eta_phi(x, y, z)
    points = Spacepoints(measurement_index=np.arange(len(meas)), x=x, y=y, z=z,
                         r=np.hypot(x, y), phi=phi, eta=eta)
    m = detector.modules
    features = shape_features(
        rotation=detector.rotation[rows], thickness=m["thickness"][rows],
        pitch_u=m["pitch_u"][rows], pitch_v=m["pitch_v"][rows], n_cells=meas.n_cells,
        charge=meas.charge, size_u=meas.size_u, size_v=meas.size_v)
    return points, features
