"""GPU prototrack_ckf: the bridge's CKF (``traccc_bridge.stages.PrototrackCkfStage``) with its
per-step arithmetic in torch (``backends.gpu.torch_ckf``: what runs where, and the copies it
counts). A ``ResidentStage``: under a pipeline's device residency it takes the starts'
parameters and covariances from the device, where ``prototrack_seeding/gpu`` left them."""

from __future__ import annotations

from backends.gpu.torch_ckf import TorchCkf
from taas.detector.detector import Detector
from taas.stages.device_tensors import DeviceOutputs, DeviceTensors
from traccc_bridge.config import TracccFindingConfig
from traccc_bridge.stages import PrototrackCkfStage, SeedStartTable

#: The inputs read from the device (uploaded there first when the host has them).
_ON_DEVICE = (f"{SeedStartTable.NAME}.params", f"{SeedStartTable.NAME}.covariance")


class GpuPrototrackCkf(TorchCkf, PrototrackCkfStage):
    """Proto-track seeds -> track candidates, track arithmetic in torch (float64), on CUDA
    when present."""

    def __init__(self, detector: Detector, config: TracccFindingConfig | None = None) -> None:
        super().__init__(detector, config)
        self.use_torch_kernels(detector)

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        self.torch_work.transfers.reset()
        host = {s.name: tensors.host(s.name) for s in self.INPUTS if s.name not in _ON_DEVICE}
        return self.find(host, *(tensors.get(name) for name in _ON_DEVICE)).to_tensors()
