"""Python face of our HLS graph kernels (``hls/graph_kernels.h``), compiled for C simulation.

One library per fixed-point configuration (data and accumulator types and the section size
are compile-time constants of the hardware), built once through ``backends.fpga.build`` (the
content-addressed, lock-protected compile cache of the FPGA backend) and called through
``ctypes``, which releases the GIL: threads over graph sections run in parallel.

Arrays cross as float64 (every ``data_t`` value is exact in a double); each call checks its
sizes on the host and turns a kernel's error code into a ``TaasError``/``InputError`` rather than
letting a bad index reach C++.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

from backends.fpga.build import HLS_DIR, CppBuild, load_library
from backends.fpga.config import FpgaConfig
from taas.errors import InputError, TaasError

_DOUBLE_P = ctypes.POINTER(ctypes.c_double)
_LONG_P = ctypes.POINTER(ctypes.c_long)

_ERRORS = {-1: "section larger than the compiled section size",
           -2: "feature width larger than the kernels' maximum",
           -3: "edge index outside the section's nodes"}


def kernel_build(config: FpgaConfig) -> CppBuild:
    """The compile recipe of the graph kernels for ``config``'s types and section size."""
    agg = config.aggregation
    defines = (f"-DTAAS_DATA_W={config.data.width}", f"-DTAAS_DATA_I={config.data.integer}",
               f"-DTAAS_NORM_W={config.norm_input.width}",
               f"-DTAAS_NORM_I={config.norm_input.integer}",
               f"-DTAAS_AGG_W={agg.width}", f"-DTAAS_AGG_I={agg.integer}",
               f"-DTAAS_SECTION_NODES={config.section_nodes}",
               f"-DTAAS_SECTION_EDGES={config.section_edges}")
    base = CppBuild("graph_kernels", sources=(HLS_DIR / "graph_kernels.cpp",),
                    headers=(HLS_DIR / "graph_kernels.h",))
    return CppBuild(base.name, sources=base.sources, headers=base.headers,
                    flags=(*base.flags, *defines))


def _doubles(a: np.ndarray) -> tuple[np.ndarray, Any]:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a, a.ctypes.data_as(_DOUBLE_P)


def _longs(a: np.ndarray) -> tuple[np.ndarray, Any]:
    a = np.ascontiguousarray(a, dtype=np.int64)
    return a, a.ctypes.data_as(_LONG_P)


def require_finite(name: str, values: np.ndarray) -> None:
    """Fixed-point conversion of NaN or inf is undefined: refuse it with a clear error."""
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InputError(f"{name}: {bad} non-finite value(s) (NaN or inf) cannot enter the "
                         "fixed-point emulation")


class GraphKernels:
    """The compiled graph kernels of one ``FpgaConfig`` (gather, aggregation, residual,
    LayerNorm + ReLU, quantization)."""

    def __init__(self, config: FpgaConfig) -> None:
        self.config = config
        self.build = kernel_build(config)
        lib = load_library(self.build)
        self._lib = lib
        for name, args in {
            "taas_gather_edge_inputs": [_DOUBLE_P, ctypes.c_int, ctypes.c_int, _DOUBLE_P,
                                        ctypes.c_int, _LONG_P, _LONG_P, ctypes.c_int,
                                        _DOUBLE_P],
            "taas_node_inputs": [_DOUBLE_P, ctypes.c_int, ctypes.c_int, _DOUBLE_P,
                                 ctypes.c_int, _LONG_P, _LONG_P, ctypes.c_int, _DOUBLE_P],
            "taas_residual_add": [_DOUBLE_P, _DOUBLE_P, ctypes.c_long, _DOUBLE_P],
            "taas_layernorm_relu": [_DOUBLE_P, ctypes.c_long, ctypes.c_int, _DOUBLE_P,
                                    _DOUBLE_P, ctypes.c_double, _DOUBLE_P],
            "taas_quantize": [_DOUBLE_P, ctypes.c_long, _DOUBLE_P],
        }.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        for name in ("taas_section_nodes", "taas_section_edges", "taas_max_width"):
            getattr(lib, name).restype = ctypes.c_int
        self.section_nodes = int(lib.taas_section_nodes())
        self.section_edges = int(lib.taas_section_edges())
        self.max_width = int(lib.taas_max_width())

    @staticmethod
    def _check(rc: int, what: str) -> None:
        if rc != 0:
            raise TaasError(f"graph kernel {what}: {_ERRORS.get(rc, f'error code {rc}')}")

    def _check_edges(self, n_nodes: int, src: np.ndarray, dst: np.ndarray) -> None:
        if len(src) > self.section_edges:
            raise InputError(f"{len(src)} edges exceed the section size {self.section_edges}")
        if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_nodes):
            raise InputError(f"edge index outside [0, {n_nodes})")

    def gather_edge_inputs(self, h: np.ndarray, extra: np.ndarray, src: np.ndarray,
                           dst: np.ndarray) -> np.ndarray:
        """``[h[src], h[dst], extra]`` per edge, in ``data_t`` (at most one section of edges;
        ``h`` may be a whole event's node table)."""
        n, width = h.shape
        n_edges, extra_width = extra.shape
        self._check_edges(n, src, dst)
        out = np.empty((n_edges, 2 * width + extra_width))
        (h, hp), (extra, xp) = _doubles(h), _doubles(extra)
        (src, sp), (dst, dp) = _longs(src), _longs(dst)
        self._check(self._lib.taas_gather_edge_inputs(
            hp, n, width, xp, extra_width, sp, dp, n_edges, _doubles(out)[1]), "gather")
        return out

    def node_inputs(self, h: np.ndarray, e: np.ndarray, src: np.ndarray, dst: np.ndarray
                    ) -> np.ndarray:
        """``[h, sum_in, max_in, sum_out, max_out]`` per node of one section."""
        n, width = h.shape
        n_edges, e_width = e.shape
        if n > self.section_nodes:
            raise InputError(f"{n} nodes exceed the section size {self.section_nodes}")
        self._check_edges(n, src, dst)
        out = np.empty((n, width + 4 * e_width))
        (h, hp), (e, ep) = _doubles(h), _doubles(e)
        (src, sp), (dst, dp) = _longs(src), _longs(dst)
        self._check(self._lib.taas_node_inputs(hp, n, width, ep, e_width, sp, dp, n_edges,
                                               _doubles(out)[1]), "aggregation")
        return out

    def residual_add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``saturate(a + b)`` in ``data_t``."""
        if a.shape != b.shape:
            raise ValueError(f"residual_add: shapes {a.shape} and {b.shape} differ")
        out = np.empty(a.shape)
        (a, ap), (b, bp) = _doubles(a), _doubles(b)
        self._check(self._lib.taas_residual_add(ap, bp, a.size, _doubles(out)[1]), "residual")
        return out

    def layernorm_relu(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
                       ) -> np.ndarray:
        """LayerNorm then ReLU of each row of ``x`` (``gamma``/``beta`` on the weight grid)."""
        rows, width = x.shape
        if gamma.shape != (width,) or beta.shape != (width,):
            raise ValueError(f"layernorm_relu: gamma/beta must have shape ({width},)")
        out = np.empty((rows, width))
        (x, xp), (gamma, gp), (beta, bp) = _doubles(x), _doubles(gamma), _doubles(beta)
        self._check(self._lib.taas_layernorm_relu(xp, rows, width, gp, bp, float(eps),
                                                  _doubles(out)[1]), "layernorm")
        return out

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """``x`` rounded and saturated to ``data_t``."""
        out = np.empty(np.shape(x))
        x, xp = _doubles(x)
        self._check(self._lib.taas_quantize(xp, x.size, _doubles(out)[1]), "quantize")
        return out


@functools.lru_cache(maxsize=8)
def graph_kernels(config: FpgaConfig) -> GraphKernels:
    """The kernels of ``config``, loaded once per process."""
    return GraphKernels(config)
