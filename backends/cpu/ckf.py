"""CPU ckf: the reference hook of ``taas.tracking.stages.CkfStage``,
combinatorial Kalman filter, numba (taas.tracking.ckf).
"""

from __future__ import annotations

from taas.tracking.stages import CkfStage


class CpuCkf(CkfStage):
    """The ckf stage on the CPU."""

    BACKEND = "cpu"
