"""GPU ckf: ``taas.tracking.stages.CkfStage`` with the CKF's per-step arithmetic in torch
(``backends.gpu.torch_ckf``: what runs where, and the copies it counts)."""

from __future__ import annotations

from backends.gpu.torch_ckf import TorchCkf
from taas.detector.detector import Detector
from taas.tracking.ckf import CkfConfig
from taas.tracking.stages import CkfStage


class GpuCkf(TorchCkf, CkfStage):
    """The ckf stage with its track arithmetic in torch (float64), on CUDA when present."""

    def __init__(self, detector: Detector, config: CkfConfig | None = None) -> None:
        super().__init__(detector, config)
        self.use_torch_kernels(detector)
