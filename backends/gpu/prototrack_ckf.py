"""GPU prototrack_ckf: the bridge's CKF (``traccc_bridge.stages.PrototrackCkfStage``) with its
per-step arithmetic in torch (``backends.gpu.torch_ckf``: what runs where, and the copies it
counts)."""

from __future__ import annotations

from backends.gpu.torch_ckf import TorchCkf
from taas.detector.detector import Detector
from traccc_bridge.config import TracccFindingConfig
from traccc_bridge.stages import PrototrackCkfStage


class GpuPrototrackCkf(TorchCkf, PrototrackCkfStage):
    """Proto-track seeds -> track candidates, track arithmetic in torch (float64), on CUDA
    when present."""

    def __init__(self, detector: Detector, config: TracccFindingConfig | None = None) -> None:
        super().__init__(detector, config)
        self.use_torch_kernels(detector)
