"""What both GPU CKF stages add to their CKF stage base (a mixin before it): torch kernels.

Propagation with the transport Jacobian and material noise, chi2 and Kalman updates run
batched on CUDA (``taas.tracking.batched.ckf_kernels``, the numba kernels' formulas);
navigation, branching and seed bookkeeping stay on the host -- unlike traccc's GPU CKF, which
navigates on the device -- so every step copies its pairs to the device and its predictions
back (``transfers`` counts them per event). Without CUDA it runs on the CPU device and
``device`` says so.
"""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.gnn.track_building import cuda_or_fallback
from taas.stages.base import Tolerance
from taas.tracking.batched.ckf_kernels import TorchCkfKernels
from taas.tracking.ckf import CkfKernels


class TorchCkf:
    """The device hook of a CKF stage: ``use_torch_kernels`` after the base's constructor."""

    BACKEND = "gpu"
    COUNTS_TRANSFERS = True  # every kernel call's copies (taas.stages.transfers)
    #: float64 on both sides; the same tracks, states within ~1e-12 relative
    CONFORMANCE_TOLERANCE = Tolerance(rtol=1e-7, atol=1e-12)
    torch_kernels: TorchCkfKernels
    kernels: CkfKernels

    def use_torch_kernels(self, detector: Detector) -> None:
        device, note = cuda_or_fallback(allow_cpu_fallback=True)
        self.torch_kernels = TorchCkfKernels(detector, device, note=note)
        self.kernels = self.torch_kernels

    @property
    def device(self) -> str:
        return self.torch_kernels.label

    @property
    def transfers(self) -> dict[str, int]:
        """Host <-> device copies of the latest event (tensors and bytes each way)."""
        return self.torch_kernels.transfers.summary()

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.torch_kernels.transfers.reset()
        out: dict[str, np.ndarray] = super().compute(inputs)  # type: ignore[misc]
        return out
