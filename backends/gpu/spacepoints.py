"""GPU space points: the ``place`` hook of ``taas.reco.stages.SpacepointStage``, one OpenCL kernel.

Every output row depends on one measurement and its module only, so one work item computes the
global position, r, phi, eta and every feature of ``taas.reco.cluster_features`` (the kernel
repeats those few formulas in OpenCL C; the Python definitions stay the reference, and the tests
hold the two equal within 1e-9). The module table goes to the device once per stage instance.
The stage base looks up module rows (numpy binary search, also what validates the module keys);
the hook passes through the columns the features copy unchanged (n_cells, charge, sizes).
"""

from __future__ import annotations

import threading

import numpy as np
import pyopencl as cl

from backends.gpu.opencl import OpenClConfig, get_runtime, ndrange
from taas.detector.detector import Detector
from taas.edm import Measurements, Spacepoints
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.stages import SpacepointStage

#: Kernel output rows, in the order the kernel writes them.
_POINT_COLUMNS = ("x", "y", "z", "r", "phi", "eta")
_FEATURE_COLUMNS = ("extent_u", "extent_v", "local_angle", "local_eta", "local_phi",
                    "gx", "gy", "gz", "global_eta", "global_phi")


class GpuSpacepoints(SpacepointStage):
    """Measurements -> space points and features with OpenCL; output equal to the CPU hook's."""

    BACKEND = "gpu"
    COUNTS_TRANSFERS = True  # the runtime counts every copy, the handover's first leg too

    def __init__(self, detector: Detector, opencl: OpenClConfig | None = None) -> None:
        super().__init__(detector)
        self.runtime = get_runtime(opencl)
        self._kernel = cl.Kernel(self.runtime.program("spacepoints"), "spacepoints")
        self._lock = threading.Lock()  # the kernel object holds its arguments
        m = detector.modules
        self._geometry = self.runtime.columns_to_device(
            [m["cx"], m["cy"], m["cz"], *detector.rotation.reshape(-1, 9).T, m["thickness"],
             m["pitch_u"], m["pitch_v"]])

    @property
    def device(self) -> str:
        return self.runtime.description

    def place(self, rows: np.ndarray, meas: Measurements
              ) -> tuple[Spacepoints, SpacepointFeatures]:
        n = len(meas)
        rt = self.runtime
        n_out = len(_POINT_COLUMNS) + len(_FEATURE_COLUMNS)
        with self._lock:
            out = rt.empty(n_out * n, np.float64)
            self._kernel(rt.queue, *ndrange(n), np.int32(n), np.int32(len(self.detector)),
                         *(rt.to_device(a).data for a in (
                             rows.astype(np.int32), meas.local_u, meas.local_v, meas.size_u,
                             meas.size_v)),
                         self._geometry.data, out.data)
            result = rt.to_host(out).reshape(n_out, n)
        columns = dict(zip(_POINT_COLUMNS + _FEATURE_COLUMNS, result, strict=True))
        points = Spacepoints(measurement_index=np.arange(n),
                             **{c: columns[c] for c in _POINT_COLUMNS})
        features = SpacepointFeatures(
            n_cells=meas.n_cells, charge=meas.charge, size_u=meas.size_u, size_v=meas.size_v,
            **{c: columns[c] for c in _FEATURE_COLUMNS})
        return points, features
