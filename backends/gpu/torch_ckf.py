"""What both GPU CKF stages add to their CKF stage base (a mixin before it): torch kernels.

The CKF (``taas.tracking.ckf``) runs with ``taas.tracking.batched.ckf_kernels.TorchCkfKernels``:
navigation, propagation with the transport Jacobian and material noise, chi2, Kalman updates
and the candidates' bookkeeping in torch, on CUDA, the candidates staying on the device for a
batch of seeds as traccc's do. The seed selection and deduplication between batches, and the
seeds' estimates, run on the host: per event the measurements go up once, per batch the seeds
go up and the found tracks' measurements come down, and the tracks come down at the end
(``transfers`` counts them: ``backends.gpu.torch_hook``). Given starts (``prototrack_ckf``)
go up once per event, or not at all under a pipeline's device residency, where the bridge
left them on the device. Without CUDA it runs on the CPU device and ``device`` says so.
"""

from __future__ import annotations

from backends.gpu.torch_hook import TorchDeviceHook
from taas.detector.detector import Detector
from taas.gnn.track_building import cuda_or_fallback
from taas.stages.base import Tolerance
from taas.tracking.batched.ckf_kernels import TorchCkfKernels
from taas.tracking.ckf import CkfKernels


class TorchCkf(TorchDeviceHook):
    """The device hook of a CKF stage: ``use_torch_kernels`` after the base's constructor."""

    BACKEND = "gpu"
    #: float64 on both sides; the same tracks, states within ~1e-12 relative
    CONFORMANCE_TOLERANCE = Tolerance(rtol=1e-7, atol=1e-12)
    kernels: CkfKernels

    def use_torch_kernels(self, detector: Detector) -> None:
        self.torch_device, note = cuda_or_fallback(allow_cpu_fallback=True)
        self.kernels = self.torch_work = TorchCkfKernels(detector, self.torch_device, note=note)
