"""GPU prototrack_seeding: the bridge (``traccc_bridge.stages.PrototrackSeedingStage``) with its
array work in torch, on CUDA when present, else on torch's CPU device (``device`` says so).

The hook is ``TorchArrays``: ``traccc_bridge.bridge.ArrayOps`` in torch. The bridge's formulas
(repeats dropped, triplet choice, vertex line fit, helix estimate, covariance) are the same text
the cpu backend runs with numpy; what stays on the host -- the input checks, the module lookup,
the surface sort, the ``fit`` method's Kalman fit and the supplementary triplet seeding -- is
listed in ``traccc_bridge.bridge``. Each event's host <-> device copies are counted
(``transfers``): the stage API is numpy, so the inputs go up and the outputs come down.
"""

from __future__ import annotations

import numpy as np
import torch

from backends.gpu.torch_hook import TorchDeviceHook
from taas.detector.detector import Detector
from taas.gnn.track_building import cuda_or_fallback
from taas.stages.base import Tolerance
from taas.tracking.batched.ckf_kernels import TransferCounter
from traccc_bridge.bridge import Array, ArrayOps
from traccc_bridge.config import TracccSeedingConfig
from traccc_bridge.stages import PrototrackSeedingStage


class TorchArrays(ArrayOps):
    """``ArrayOps`` on a torch ``device``; ``transfers`` counts every copy across the host
    boundary. The detector's module geometry goes to the device once per detector
    (``geometry``; not counted per event)."""

    xp = torch

    def __init__(self, device: torch.device, *, note: str = "") -> None:
        self.device = device
        self.label = f"{device}{note}"
        self.transfers = TransferCounter()
        self._geometry: tuple[Detector, torch.Tensor, torch.Tensor] | None = None

    def upload(self, array: np.ndarray) -> Array:
        # the counter's upload moves the first axis last (the CKF's batched layout): hand it
        # the last axis first, so the tensor keeps the array's shape
        return self.transfers.upload(np.moveaxis(array, -1, 0) if array.ndim > 1 else array,
                                     self.device)

    def download(self, array: Array) -> np.ndarray:
        return self.transfers.download(array.movedim(0, -1) if array.dim() > 1 else array)

    def geometry(self, detector: Detector) -> tuple[Array, Array]:
        if self._geometry is None or self._geometry[0] is not detector:
            self._geometry = (detector, torch.as_tensor(detector.center, device=self.device),
                              torch.as_tensor(detector.rotation, device=self.device))
        return self._geometry[1], self._geometry[2]

    def stable_argsort(self, a: Array) -> Array:
        return torch.argsort(a, stable=True)

    def repeat(self, values: Array, counts: Array) -> Array:
        return torch.repeat_interleave(values, counts)

    def segment_sum(self, values: Array, segment: Array, n: int) -> Array:
        # torch.bincount gives integers for empty weights; index_add keeps the dtype
        return torch.zeros(n, dtype=values.dtype, device=self.device).index_add_(
            0, segment, values)


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
