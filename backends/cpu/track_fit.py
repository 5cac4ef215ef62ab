"""CPU track_fit: the reference hook of ``taas.tracking.stages.TrackFitStage``,
Kalman fit and RTS smoother, numba (taas.tracking.fitter).
"""

from __future__ import annotations

from taas.tracking.stages import TrackFitStage


class CpuTrackFit(TrackFitStage):
    """The track_fit stage on the CPU."""

    BACKEND = "cpu"
