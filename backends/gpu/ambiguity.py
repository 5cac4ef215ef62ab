"""GPU ambiguity: the greedy solver of ``taas.tracking.stages.AmbiguityResolutionStage`` in
torch (``taas.tracking.batched.ambiguity``), on CUDA when present, else on the CPU device
(``device`` says so). The same survivors as the cpu backend's numba solver; the track lists'
selection around it stays on the host, and each event's copies are counted (``transfers``).
"""

from __future__ import annotations

from backends.gpu.torch_hook import TorchDeviceHook
from taas.detector.detector import Detector
from taas.gnn.track_building import cuda_or_fallback
from taas.tracking.ambiguity import AmbiguityConfig
from taas.tracking.batched.ambiguity import TorchGreedySolver
from taas.tracking.stages import AmbiguityResolutionStage


class GpuAmbiguityResolution(TorchDeviceHook, AmbiguityResolutionStage):
    """The ambiguity stage with its greedy solver in torch."""

    BACKEND = "gpu"

    def __init__(self, detector: Detector, config: AmbiguityConfig | None = None) -> None:
        super().__init__(detector, config)
        device, note = cuda_or_fallback(allow_cpu_fallback=True)
        self.solver = self.torch_work = TorchGreedySolver(device, note=note)
