"""The FPGA front end in C simulation: the HLS clustering and space-point kernels over an event.

The kernels (``hls/clustering.*``, ``hls/spacepoints.*``) are synthesizable HLS C++ with
``ap_`` fixed-point types; here they run bit-accurately on the CPU, compiled by g++ once into a
content-keyed cache (``backends.fpga.build``) and called through ctypes, which releases the GIL:
an event's modules (clustering) or measurements (space points) are cut into one contiguous chunk
per thread.

What the fixed-point words mean for the physics (details in the headers):

* clustering: cell values are rounded to 2^-24 (in [-4, 4), saturating); sums are exact; the
  centroid keeps 24 fractional bits of a channel, local coordinates 24 fractional bits of a mm,
  and the pitch is stored to 2^-28 mm, whose rounding times the channel number dominates: the
  centroid agrees with the CPU stage to ``CENTROID_TOLERANCE_PITCH`` of a pitch (measured on
  ``small`` and ``medium`` events: 2.2e-5 pitch, 1.8e-6 mm), with identical cell sets, sizes and
  measurement order.
* space points: global coordinates to 2^-17 mm, rotations to 2^-25, cluster-shape vectors to
  2^-24 mm, CORDIC r / phi / eta with 26 iterations; positions agree with the CPU stage to
  ``POSITION_TOLERANCE_MM`` (measured: 8e-6 mm in x, y, z and 1.4e-5 mm in r), angles and
  pseudorapidities to ``ANGLE_TOLERANCE`` (measured 2.6e-6).
* a cell value the charge word cannot hold (|value| >= 4) is refused with ``InputError``
  rather than saturated, which would silently bias centroids.
* a module may hold at most ``max_cells_per_module()`` cells (the block-RAM module buffer of
  the clustering kernel): a bigger module is refused with ``InputError`` naming it, never split
  silently (a split would cut clusters). The largest module of a ``medium`` event has 579.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from backends.fpga.build import HLS_DIR, CppBuild, load_library
from taas.detector.detector import Detector
from taas.edm import Measurements, Spacepoints
from taas.errors import InputError, TaasError
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.clustering import ClusteringConfig, unpack_cell_keys

log = logging.getLogger(__name__)

#: What ``Stage.device`` reports for the front-end stages: emulation, not hardware.
DEVICE = "fpga (HLS C++ C simulation)"
#: Centroid agreement with the CPU stage the fixed-point formats guarantee, in pitches: the
#: pitch's 2^-29 mm rounding error times up to 4096 channels, 2^-24 mm of output rounding, and
#: the cell values' 2^-24 rounding (which only matters for clusters of very little charge).
CENTROID_TOLERANCE_PITCH = 2.0**-12
#: Space-point agreement with the CPU stage (mm): a few 2^-17 mm position LSBs (centre,
#: rotation times local point, CORDIC magnitude).
POSITION_TOLERANCE_MM = 3e-5
#: Agreement of phi, eta and the shape angles (rad, or units of eta): CORDIC with 26 steps on
#: 25 fractional bits.
ANGLE_TOLERANCE = 1e-5

FRONTEND_BUILD = CppBuild(
    "taas_fpga_frontend",
    sources=tuple(HLS_DIR / f for f in ("clustering.cpp", "clustering_csim.cpp",
                                        "spacepoints.cpp", "spacepoints_csim.cpp")),
    headers=(HLS_DIR / "clustering.h", HLS_DIR / "spacepoints.h"),
)
#: Columns of the space-point kernel's output rows (``taas_spacepoints_run``).
_POINT_COLUMNS = ("x", "y", "z", "r", "phi", "eta")
_FEATURE_COLUMNS = ("extent_u", "extent_v", "local_angle", "local_eta", "local_phi",
                    "gx", "gy", "gz", "global_eta", "global_phi")

_T = TypeVar("_T")


@dataclass(frozen=True)
class EmulationConfig:
    """How the C simulation runs on the host: ``threads`` worker threads per stage call."""

    threads: int = 2

    def __post_init__(self) -> None:
        if type(self.threads) is not int or self.threads < 1:
            raise ValueError(f"threads must be a positive int, got {self.threads!r}")


def _array(dtype: npt.DTypeLike) -> type:
    return np.ctypeslib.ndpointer(dtype, flags="C_CONTIGUOUS")


@cache
def frontend_library() -> ctypes.CDLL:
    """The compiled front-end kernels (built once per content, loaded once per process)."""
    lib = load_library(FRONTEND_BUILD)
    i32, i64, f32, f64 = (_array(t) for t in (np.int32, np.int64, np.float32, np.float64))
    lib.taas_clustering_max_cells.restype = ctypes.c_int
    lib.taas_clustering_channel_bits.restype = ctypes.c_int
    lib.taas_clustering_value_limit.restype = ctypes.c_double
    lib.taas_cluster_modules.restype = ctypes.c_int64
    lib.taas_cluster_modules.argtypes = [ctypes.c_int64, i64, i32, i32, f32, f64,
                                         ctypes.c_int32, ctypes.c_int32, i64, f64, i32, i64]
    lib.taas_spacepoints_max_modules.restype = ctypes.c_int
    lib.taas_spacepoints_geometry.restype = ctypes.c_void_p
    lib.taas_spacepoints_geometry.argtypes = [ctypes.c_int64, f64]
    lib.taas_spacepoints_free.restype = None
    lib.taas_spacepoints_free.argtypes = [ctypes.c_void_p]
    lib.taas_spacepoints_run.restype = None
    lib.taas_spacepoints_run.argtypes = [ctypes.c_void_p, ctypes.c_int64, i32, f64, f64, i32,
                                         i32, f64]
    return lib


def max_cells_per_module() -> int:
    """Cells one module may hold: the clustering kernel's buffer (``MAX_CELLS``)."""
    return int(frontend_library().taas_clustering_max_cells())


def _balanced_chunks(weights: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Contiguous index ranges of ``weights`` with about equal total weight, at most ``parts``."""
    cumulative = np.cumsum(weights)
    targets = cumulative[-1] * np.arange(1, parts) / parts
    cuts = np.unique(np.concatenate([[0], np.searchsorted(cumulative, targets) + 1,
                                     [len(weights)]]))
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def _run_chunks(work: Callable[[int, int], _T], chunks: Sequence[tuple[int, int]],
                threads: int) -> list[_T]:
    """``work`` over every chunk, on ``threads`` threads (the kernels release the GIL)."""
    if threads == 1 or len(chunks) == 1:
        return [work(a, b) for a, b in chunks]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda c: work(*c), chunks))


class HlsClustering:
    """The clustering kernel over an event's sorted cells, module by module."""

    def __init__(self, detector: Detector, config: ClusteringConfig,
                 emulation: EmulationConfig) -> None:
        self.detector = detector
        self.config = config
        self.emulation = emulation
        lib = frontend_library()
        self._max_cells = max_cells_per_module()
        self._value_limit = float(lib.taas_clustering_value_limit())
        m = detector.modules
        channels = (1 << int(lib.taas_clustering_channel_bits())) - 1
        if len(detector) and max(int(m["n_u"].max()), int(m["n_v"].max())) > channels:
            raise TaasError(f"{detector!r}: a module has more than {channels} channels along an "
                            "axis, more than the FPGA clustering kernel's CHANNEL_BITS hold")
        self._geometry = np.ascontiguousarray(np.stack(
            [m["pitch_u"], m["pitch_v"], m["pitch_u"] / 2 - m["max_hu"],
             m["pitch_v"] / 2 - m["hv"]], axis=1), dtype=np.float64)

    def measure(self, key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, Measurements]:
        """Label per cell and measurements for cells sorted by packed key (``value`` alike)."""
        rows, ch0, ch1 = unpack_cell_keys(key)
        bounds = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1], True])
        module_rows = rows[bounds[:-1]]
        counts = np.diff(bounds)
        if np.any(too_big := counts > self._max_cells):
            k = int(np.flatnonzero(too_big)[0])
            raise InputError(
                f"module {int(self.detector.modules['module_key'][module_rows[k]])} has "
                f"{int(counts[k])} cells, more than the {self._max_cells} the FPGA clustering "
                f"kernel's module buffer holds (MAX_CELLS in hls/clustering.h; "
                f"{int(too_big.sum())} modules affected)", column="cells.module_key")
        if np.any(outside := ~(np.abs(value) < self._value_limit)):
            k = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"cell value {value[k]} is outside the FPGA clustering kernel's charge word "
                f"(|value| < {self._value_limit:g}; charge_t in hls/clustering.h): it would "
                f"saturate and bias the centroid ({int(outside.sum())} cells affected)",
                column="cells.value")
        ch0 = ch0.astype(np.int32)
        ch1 = ch1.astype(np.int32)
        value = np.ascontiguousarray(value, dtype=np.float32)
        geometry = self._geometry[module_rows]
        lib = frontend_library()
        eight = int(self.config.connectivity == 8)
        weighted = int(self.config.charge_weighted)

        def work(a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            lo, hi = bounds[a], bounds[b]
            n = hi - lo
            label = np.empty(n, np.int64)
            out_f = np.empty((n, 5), np.float64)
            out_i = np.empty((n, 4), np.int32)
            n_clusters = np.zeros(1, np.int64)
            status = lib.taas_cluster_modules(
                b - a, np.ascontiguousarray(bounds[a:b + 1] - lo), ch0[lo:hi], ch1[lo:hi],
                value[lo:hi], np.ascontiguousarray(geometry[a:b]), eight, weighted, label,
                out_f, out_i, n_clusters)
            if status:  # the kernel's own overflow flag: the check above makes this a bug
                raise TaasError(f"FPGA clustering kernel overflowed on module row "
                                f"{int(module_rows[a + status - 1])}")
            m = int(n_clusters[0])
            out_i = out_i[:m]
            out_i[:, 0] += a  # module index within the event
            return label, out_f[:m], out_i

        chunks = _balanced_chunks(counts, self.emulation.threads)
        parts = _run_chunks(work, chunks, self.emulation.threads)
        offsets = np.cumsum([0] + [len(f) for _, f, _ in parts])[:-1]  # clusters before a chunk
        label = np.concatenate([lab + off for (lab, _, _), off in zip(parts, offsets,
                                                                      strict=True)])
        out_f = np.concatenate([f for _, f, _ in parts])
        out_i = np.concatenate([i for _, _, i in parts])
        log.debug("FPGA clustering kernel: %d cells in %d modules -> %d clusters on %d chunks",
                  len(key), len(module_rows), len(out_f), len(chunks))
        return label, Measurements(
            module_key=self.detector.modules["module_key"][module_rows[out_i[:, 0]]],
            local_u=out_f[:, 0], local_v=out_f[:, 1], var_u=out_f[:, 2], var_v=out_f[:, 3],
            size_u=out_i[:, 1], size_v=out_i[:, 2], n_cells=out_i[:, 3], charge=out_f[:, 4])


class HlsSpacepoints:
    """The space-point kernel over an event's measurements; the module table is quantized into
    the kernel's geometry words once per instance."""

    #: Local coordinates the kernel's ``local_t`` holds (mm), and the widest cluster (cells).
    LOCAL_LIMIT_MM = 128.0
    SIZE_LIMIT = (1 << 13) - 1

    def __init__(self, detector: Detector, emulation: EmulationConfig) -> None:
        self.detector = detector
        self.emulation = emulation
        lib = frontend_library()
        m = detector.modules
        table = np.ascontiguousarray(np.concatenate(
            [detector.center, detector.rotation.reshape(-1, 9),
             np.stack([m["thickness"], m["pitch_u"], m["pitch_v"]], axis=1)], axis=1),
            dtype=np.float64)
        handle = lib.taas_spacepoints_geometry(len(detector), table)
        if not handle:
            raise TaasError(f"{detector!r} has more modules than the FPGA space-point kernel's "
                            f"geometry table ({lib.taas_spacepoints_max_modules()})")
        self._handle = handle
        weakref.finalize(self, lib.taas_spacepoints_free, handle)

    def place(self, rows: np.ndarray, meas: Measurements
              ) -> tuple[Spacepoints, SpacepointFeatures]:
        """Points and features of the measurements on detector rows ``rows``."""
        n = len(meas)
        for name in ("local_u", "local_v"):
            column = getattr(meas, name)
            if np.any(bad := ~(np.abs(column) < self.LOCAL_LIMIT_MM)):
                row = int(np.flatnonzero(bad)[0])
                raise InputError(f"{name} = {column[row]} mm is not within the FPGA kernel's "
                                 f"+-{self.LOCAL_LIMIT_MM:g} mm", row=row,
                                 column=f"measurements.{name}")
        for name in ("size_u", "size_v"):
            column = getattr(meas, name)
            if np.any(bad := (column < 0) | (column > self.SIZE_LIMIT)):
                row = int(np.flatnonzero(bad)[0])
                raise InputError(f"{name} = {column[row]} is not within the FPGA kernel's "
                                 f"0..{self.SIZE_LIMIT}", row=row, column=f"measurements.{name}")
        row32 = rows.astype(np.int32)
        local_u = np.ascontiguousarray(meas.local_u, dtype=np.float64)
        local_v = np.ascontiguousarray(meas.local_v, dtype=np.float64)
        size_u = meas.size_u.astype(np.int32)
        size_v = meas.size_v.astype(np.int32)
        out = np.empty((n, len(_POINT_COLUMNS) + len(_FEATURE_COLUMNS)), np.float64)
        lib = frontend_library()

        def work(a: int, b: int) -> None:
            result = np.empty((b - a, out.shape[1]), np.float64)
            lib.taas_spacepoints_run(self._handle, b - a, row32[a:b], local_u[a:b],
                                     local_v[a:b], size_u[a:b], size_v[a:b], result)
            out[a:b] = result

        _run_chunks(work, _balanced_chunks(np.ones(n), self.emulation.threads),
                    self.emulation.threads)
        columns = dict(zip(_POINT_COLUMNS + _FEATURE_COLUMNS, out.T, strict=True))
        points = Spacepoints(measurement_index=np.arange(n),
                             **{c: columns[c] for c in _POINT_COLUMNS})
        features = SpacepointFeatures(
            n_cells=meas.n_cells, charge=meas.charge, size_u=meas.size_u, size_v=meas.size_v,
            **{c: columns[c] for c in _FEATURE_COLUMNS})
        return points, features
