"""GPU prototrack_seeding: the bridge (``traccc_bridge.stages.PrototrackSeedingStage``) with its
array work in torch, on CUDA when present, else on torch's CPU device (``device`` says so).

The hook is ``TorchArrays`` (``taas.tracking.batched.torch_arrays``): ``ArrayOps`` in torch.
The bridge's formulas (repeats dropped, triplet choice, vertex line fit, helix estimate,
covariance) are the same text the cpu backend runs with numpy; what stays on the host -- the
input checks, the module lookup, the surface sort, the ``fit`` method's Kalman fit and the
supplementary triplet seeding -- is listed in ``traccc_bridge.bridge``. Each event's host <->
device copies are counted (``transfers``): the stage API is numpy, so the inputs go up and the
outputs come down.
"""

from __future__ import annotations

from backends.gpu.torch_hook import TorchDeviceHook
from taas.detector.detector import Detector
from taas.gnn.track_building import cuda_or_fallback
from taas.stages.base import Tolerance
from taas.tracking.batched.torch_arrays import TorchArrays
from traccc_bridge.config import TracccSeedingConfig
from traccc_bridge.stages import PrototrackSeedingStage


class GpuPrototrackSeeding(TorchDeviceHook, PrototrackSeedingStage):
    """Proto-tracks -> seeds, start parameters and surface order; the array work in torch
    (float64), on CUDA when present."""

    BACKEND = "gpu"
    #: float64 on both sides: the same seeds, parameters within libm's last bits
    CONFORMANCE_TOLERANCE = Tolerance(rtol=1e-9, atol=1e-12)

    def __init__(self, detector: Detector, config: TracccSeedingConfig | None = None) -> None:
        super().__init__(detector, config)
        device, note = cuda_or_fallback(allow_cpu_fallback=True)
        self.arrays = self.torch_work = TorchArrays(device, note=note)
