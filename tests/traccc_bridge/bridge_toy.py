"""Space points for toy-detector measurements (the bridge's tests need both)."""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints


def spacepoints_of(detector: Detector, measurements: Measurements) -> Spacepoints:
    """One space point per measurement at its global position."""
    rows = detector.index_of(measurements["module_key"])
    xyz = detector.local_to_global(rows, measurements["local_u"], measurements["local_v"])
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    return Spacepoints(measurement_index=np.arange(len(measurements)), x=xyz[:, 0],
                       y=xyz[:, 1], z=xyz[:, 2], r=r, phi=np.arctan2(xyz[:, 1], xyz[:, 0]),
                       eta=np.arcsinh(xyz[:, 2] / r))
