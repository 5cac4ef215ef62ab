"""GPU clustering: the sparse CCL as OpenCL kernels (a GPU, or PoCL on the CPU).

The ``measure`` hook of ``taas.reco.stages.ClusteringStage``, with the same result as the CPU
hook, measurement for measurement: the stage base packs and sorts the cell keys (numpy's sort;
the module lookup is a binary search in numpy too), then the device

1. finds each cell's earlier neighbours in the sorted array by binary search (4 or 8
   connectivity per ``ClusteringConfig``),
2. joins them with a min-label union-find (atomic_min hooking plus path compression, repeated
   until no edge joins two roots, as traccc's FastSV does with its own hooking rules), so that
   each cluster's root is its first cell in sorted order, which fixes the measurement order,
3. reduces each cluster in float64 over its cells in sorted order: the sums run in numpy
   bincount's order, so centroids and variances are bit-identical to the CPU stage.

Between 2 and 3 the host turns roots into labels (a prefix sum) and groups the cells cluster by
cluster with a stable sort: both are single numpy calls on small integer arrays, and a
segmented layout makes the reduction deterministic without float atomics (which OpenCL 1.2 lacks).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from backends.gpu.opencl import OpenClConfig, get_runtime, ndrange
from taas.detector.detector import Detector
from taas.edm import Measurements
from taas.errors import InputError, TaasError
from taas.reco.clustering import CHANNEL_BITS, ClusteringConfig
from taas.reco.stages import ClusteringStage

log = logging.getLogger(__name__)

#: Union-find rounds before giving up; each round at least halves typical path lengths, so real
#: events need a handful. Reaching this means a broken device or driver, not a big event.
MAX_ROUNDS = 1000
_INT32_MAX = np.iinfo(np.int32).max


def labels_from_roots(root: np.ndarray) -> tuple[np.ndarray, int]:
    """Cluster label per cell, numbered in order of the clusters' roots (their first cells)."""
    is_root = root == np.arange(len(root))
    rank = np.cumsum(is_root) - 1
    return rank[root], int(rank[-1]) + 1


class GpuClustering(ClusteringStage):
    """Cells -> clusters -> measurements with OpenCL kernels; output identical to the CPU hook.

    ``device`` names the OpenCL device used; the runtime counts every copy.
    """

    BACKEND = "gpu"
    COUNTS_TRANSFERS = True

    def __init__(self, detector: Detector, config: ClusteringConfig | None = None,
                 opencl: OpenClConfig | None = None) -> None:
        super().__init__(detector, config)
        self.runtime = get_runtime(opencl)
        program = self.runtime.program("clustering", {"CHANNEL_BITS": CHANNEL_BITS})
        # kernel objects hold their arguments: one set per instance, used under a lock
        self._kernels = {name: cl.Kernel(program, name)
                         for name in ("link_neighbours", "hook", "compress", "cluster_moments")}
        self._lock = threading.Lock()
        m = detector.modules
        self._geometry = self.runtime.columns_to_device(
            [m["max_hu"], m["hv"], m["pitch_u"], m["pitch_v"]])

    @property
    def device(self) -> str:
        return self.runtime.description

    def measure(self, key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, Measurements]:
        n = len(key)
        if n > _INT32_MAX // 4:
            raise InputError(f"{self.qualified_name}: {n} cells exceed the kernels' 32-bit "
                             "indices")
        with self._lock:
            d_key = self.runtime.to_device(key)
            label, n_labels = labels_from_roots(self._roots(d_key, n))
            members = np.argsort(label, kind="stable")  # cluster by cluster, sorted within
            offsets = np.zeros(n_labels + 1, np.int32)
            np.cumsum(np.bincount(label, minlength=n_labels), out=offsets[1:])
            out_f, out_i = self._moments(d_key, value, members, offsets)
        return label, Measurements(
            module_key=self.detector.modules["module_key"][out_i[0]],
            local_u=out_f[0], local_v=out_f[1], var_u=out_f[2], var_v=out_f[3],
            size_u=out_i[1], size_v=out_i[2], n_cells=out_i[3], charge=out_f[4])

    def _roots(self, d_key: cla.Array, n: int) -> np.ndarray:
        """Root (first cell) of each sorted cell's cluster, by union-find on the device."""
        rt, k = self.runtime, self._kernels
        queue, size, count = rt.queue, ndrange(n), np.int32(n)
        reach = np.int32(1 if self.config.connectivity == 8 else 0)
        neighbour = rt.empty(4 * n, np.int32)
        parent = rt.empty(n, np.int32)
        changed = rt.empty(1, np.int32)
        k["link_neighbours"](queue, *size, count, reach, d_key.data, neighbour.data,
                             parent.data)
        zero = np.zeros(1, np.int32)
        for rounds in range(1, MAX_ROUNDS + 1):
            rt.write(changed, zero)  # not .fill(): that builds a kernel
            k["hook"](queue, *size, count, neighbour.data, parent.data, changed.data)
            k["compress"](queue, *size, count, parent.data)
            if not rt.to_host(changed)[0]:
                log.debug("%s: union-find converged in %d rounds", self.qualified_name, rounds)
                return rt.to_host(parent)
        raise TaasError(f"{self.qualified_name}: union-find did not converge in {MAX_ROUNDS} "
                        f"rounds on {self.device}")

    def _moments(self, d_key: cla.Array, value: np.ndarray, members: np.ndarray,
                 offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(5, m) float64 local_u, local_v, var_u, var_v, charge; (4, m) int32 module row,
        size_u, size_v, n_cells, for the m clusters given as member lists."""
        rt = self.runtime
        m = len(offsets) - 1
        out_f = rt.empty(5 * m, np.float64)
        out_i = rt.empty(4 * m, np.int32)
        self._kernels["cluster_moments"](
            rt.queue, *ndrange(m), np.int32(m), np.int32(len(self.detector)),
            np.int32(self.config.charge_weighted), rt.to_device(members.astype(np.int32)).data,
            rt.to_device(offsets).data, d_key.data, rt.to_device(value.astype(np.float32)).data,
            self._geometry.data, out_f.data, out_i.data)
        return rt.to_host(out_f).reshape(5, m), rt.to_host(out_i).reshape(4, m)
