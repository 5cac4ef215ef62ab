"""Stage bases of classical track finding and fitting: CKF, ambiguity resolution, Kalman fit.

Each base owns its stage's contract (specs, configuration, what is built once per detector) and
runs the reference CPU algorithm of ``taas.tracking``; a backend overrides one hook, the way the
front end's and the GNN's backends do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import ProtoTracks, Seeds, Tracks
from taas.stages.base import RowOrder, Stage
from taas.tracking.ambiguity import (
    AmbiguityConfig,
    GreedySolver,
    greedy_select,
    resolve_ambiguities,
)
from taas.tracking.ckf import NUMBA_KERNELS, CkfConfig, CkfKernels, CkfStats, find_tracks
from taas.tracking.fitter import TrackFitConfig, fit_prototracks
from taas.tracking.navigation import build_navigation


class CkfStage(Stage):
    """Measurements + space points + seeds -> track candidates (``taas.tracking.ckf``).

    The navigation (layers and module grids) is built once here, per detector, never per
    event. Output tracks carry the last filtered state and the measurement lists in order
    along the track; overlapping candidates are left to the ambiguity resolution that follows.
    ``last_stats`` holds the counters of the latest event. ``kernels`` is the device hook
    (``taas.tracking.ckf.CkfKernels``: numba here, torch in the gpu backend).
    """

    NAME = "ckf"
    INPUTS = Measurements.tensor_specs() + Spacepoints.tensor_specs() + Seeds.tensor_specs()
    OUTPUTS = Tracks.tensor_specs()
    ROW_ORDER = RowOrder(("measurements",), index_inputs=("spacepoints.measurement_index",),
                         index_outputs=("tracks.meas_indices",))

    def __init__(self, detector: Detector, config: CkfConfig | None = None) -> None:
        super().__init__(detector)
        self.config = CkfConfig() if config is None else config
        self.navigation = build_navigation(detector, margin=self.config.navigation_margin)
        self.last_stats: CkfStats | None = None
        self.kernels: CkfKernels = NUMBA_KERNELS

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tracks, self.last_stats = find_tracks(
            self.detector, self.navigation, Measurements.from_tensors(inputs),
            Spacepoints.from_tensors(inputs), Seeds.from_tensors(inputs), self.config,
            kernels=self.kernels)
        return tracks.to_tensors()


class AmbiguityResolutionStage(Stage):
    """Tracks in, the surviving measurement lists out (as proto-tracks for the final fit);
    the greedy solver of ``taas.tracking.ambiguity``."""

    NAME = "ambiguity"
    INPUTS = Tracks.tensor_specs()
    OUTPUTS = ProtoTracks.tensor_specs()
    # ROW_ORDER stays None: the greedy solver breaks ties between equally shared, equally good
    # tracks by their order, as ACTS' and traccc's solvers do

    def __init__(self, detector: Detector, config: AmbiguityConfig | None = None) -> None:
        super().__init__(detector)
        self.config = config or AmbiguityConfig()
        #: the device hook: the numba solver, or a backend's (same survivors)
        self.solver: GreedySolver = greedy_select

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return resolve_ambiguities(Tracks.from_tensors(inputs), self.config,
                                   self.solver).to_tensors()


class TrackFitStage(Stage):
    """Kalman filter + RTS smoother fit of proto-tracks (measurement lists) into tracks.

    Proto-tracks with fewer than ``config.min_measurements`` measurements, or whose fit fails,
    are absent from the output; each output track carries its measurement list, ordered along
    the track, and its parameters on the first measurement's module
    (``taas.tracking.tracks_to_perigee`` gives perigee parameters).
    """

    NAME = "track_fit"
    INPUTS = (*Measurements.tensor_specs(), *ProtoTracks.tensor_specs())
    OUTPUTS = Tracks.tensor_specs()
    ROW_ORDER = RowOrder(("measurements",), index_inputs=("prototracks.indices",),
                         index_outputs=("tracks.meas_indices",))

    def __init__(self, detector: Detector,
                 config: TrackFitConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(detector)
        if config is None:
            config = TrackFitConfig()
        elif isinstance(config, Mapping):
            config = TrackFitConfig(**config)
        self.config = config

    def fit(self, measurements: Measurements, prototracks: ProtoTracks) -> Tracks:
        """The fitted tracks. The device hook: numba on the CPU by default."""
        tracks, _ = fit_prototracks(self.detector, measurements, prototracks, self.config)
        return tracks

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.fit(Measurements.from_tensors(inputs),
                        ProtoTracks.from_tensors(inputs)).to_tensors()
