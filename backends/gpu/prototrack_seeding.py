"""GPU prototrack_seeding: the bridge (``traccc_bridge.stages.PrototrackSeedingStage``) with its
array work in torch, on CUDA when present, else on torch's CPU device (``device`` says so).

The hook is ``TorchArrays`` (``taas.tracking.batched.torch_arrays``): ``ArrayOps`` in torch.
The bridge's formulas (surface sort, repeats dropped, triplet choice, vertex line fit, helix
estimate, covariance) are the same text the cpu backend runs with numpy; what stays on the
host -- the input checks, the module lookup, the ``fit`` method's Kalman fit and the
supplementary triplet seeding (on ``supplementary_threads`` host threads; in a pipeline it
starts as soon as the space points exist and runs while the GNN stages run on the device:
``traccc_bridge.stages.EarlySupplementarySeeding``) -- is listed in ``traccc_bridge.bridge``.
Each event's host <-> device copies are counted (``transfers``). Under a pipeline's device
residency (``taas.stages.transfers.ResidentStage``) the starts' parameters and covariances --
most of the bytes: 6x6 float64 per seed -- stay on the device for the CKF
(``prototrack_ckf/gpu``), and the surface order (traccc's layout, sorted on the device) stays
there for a consumer that asks; the numpy stage API brings them down with the other outputs.
"""

from __future__ import annotations

from backends.gpu.torch_hook import TorchDeviceHook
from taas.detector.detector import Detector
from taas.gnn.track_building import cuda_or_fallback
from taas.stages.base import Tolerance
from taas.stages.device_tensors import DeviceOutputs, DeviceTensors
from taas.tracking.batched.torch_arrays import TorchArrays
from traccc_bridge.config import TracccSeedingConfig
from traccc_bridge.stages import EarlySupplementarySeeding, SeedStartTable


class GpuPrototrackSeeding(TorchDeviceHook, EarlySupplementarySeeding):
    """Proto-tracks -> seeds, start parameters and surface order; the array work in torch
    (float64), on CUDA when present."""

    BACKEND = "gpu"
    #: float64 on both sides: the same seeds, parameters within libm's last bits
    CONFORMANCE_TOLERANCE = Tolerance(rtol=1e-9, atol=1e-12)

    def __init__(self, detector: Detector, config: TracccSeedingConfig | None = None) -> None:
        super().__init__(detector, config)
        self.torch_device, note = cuda_or_fallback(allow_cpu_fallback=True)
        self.arrays = self.torch_work = TorchArrays(self.torch_device, note=note)

    @property
    def device(self) -> str:
        """The torch device; beside a GPU, the host threads of the supplementary seeding too
        (as track building names its walk on the host)."""
        if self.config.supplementary_seeding == "none" or self.torch_device.type == "cpu":
            return self.torch_work.label
        return (f"{self.torch_work.label} (+ supplementary seeding on cpu, "
                f"{self.config.supplementary_threads} thread(s))")

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        """The bridge on the host inputs; the starts' parameters and covariances and the
        surface order left on the device."""
        self.torch_work.transfers.reset()
        out = self.bridge({s.name: tensors.host(s.name) for s in self.INPUTS})
        return {**self.host_tables(out), **self.surface_order(out),
                f"{SeedStartTable.NAME}.params": out.starts.params,
                f"{SeedStartTable.NAME}.covariance": out.starts.covariance}
