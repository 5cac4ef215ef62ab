"""Kalman track fit on CPU: proto-tracks (measurement lists) in, fitted tracks out.

The physics lives in ``taas.tracking`` (shared with the CKF and any other backend); this file
is the stage contract around ``fit_prototracks``. Proto-tracks with fewer than
``config.min_measurements`` measurements, or whose fit fails, are absent from the output; each
output track carries its measurement list, ordered along the track, and its parameters on the
first measurement's module (``taas.tracking.tracks_to_perigee`` gives perigee parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.stages.base import Stage
from taas.tracking.fitter import TrackFitConfig, fit_prototracks


class CpuTrackFit(Stage):
    """Kalman filter + RTS smoother fit of proto-tracks (numpy, batched over tracks)."""

    NAME = "track_fit"
    BACKEND = "cpu"
    INPUTS = (*Measurements.tensor_specs(), *ProtoTracks.tensor_specs())
    OUTPUTS = Tracks.tensor_specs()

    def __init__(self, detector: Detector,
                 config: TrackFitConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(detector)
        if config is None:
            config = TrackFitConfig()
        elif isinstance(config, Mapping):
            config = TrackFitConfig(**config)
        self.config = config

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tracks, _ = fit_prototracks(self.detector, Measurements.from_tensors(inputs),
                                    ProtoTracks.from_tensors(inputs), self.config)
        return tracks.to_tensors()
