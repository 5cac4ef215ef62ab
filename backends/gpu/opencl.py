"""OpenCL runtime for the GPU backend: pick a device explicitly, build programs once per process.

A machine can expose several OpenCL platforms (a vendor GPU driver, PoCL on the CPU, ...), and
``create_some_context`` would take whichever comes first. Reports must name the device a stage
really ran on, so the choice is explicit: a GPU device if there is one, else a CPU device (PoCL)
when the configuration allows it. Only devices with ``cl_khr_fp64`` qualify, because the kernels
reproduce the CPU stages in float64. The context, queue and compiled programs are cached per
process: a stage instance per event would otherwise pay the compile time on every event.

Every copy between host arrays and device buffers made while a stage runs goes through
``to_device`` / ``to_host`` / ``write``, which count and time it into the pipeline's ledger
(``taas.stages.transfers``, kind ``copy``: even PoCL on the CPU copies between host memory and
its buffers). Module tables uploaded once per stage instance are set-up, not per-event copies.

The handover to torch: the OpenCL front end's space points reach the GNN stages through host
memory -- ``to_host`` of the space-point block, then torch's upload of the columns the GNN
reads. pyopencl exposes no DLPack and torch cannot wrap a ``cl_mem``; a zero-copy path would
need the Khronos external-memory extensions (export from OpenCL, ``cudaImportExternalMemory``
into CUDA), which neither pyopencl nor torch binds, and even where a driver offers them they
share memory between APIs on one GPU, not between PoCL on the CPU and CUDA. What avoids the
handover is running the front end in CUDA (numba CUDA or torch), so its outputs are torch
tensors already; pinned host buffers would only speed the two copies up. Its cost on a
``small`` event: ``benchmarks/opencl_torch_handover.py`` (results in
``benchmarks/results/opencl_torch_handover.json``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cl_tools

from taas.errors import TaasError
from taas.stages.transfers import COPY, timed

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"

#: Device types in order of preference (accelerator-type devices, e.g. FPGA emulators that
#: need offline compilation, are not candidates).
_PREFERENCE = (cl.device_type.GPU, cl.device_type.CPU)


class NoOpenClDevice(TaasError, RuntimeError):
    """No OpenCL device fits the configuration (none at all, none with fp64, or CPU refused)."""


@dataclass(frozen=True)
class OpenClConfig:
    """Which OpenCL devices a GPU-backend stage may use.

    ``allow_cpu_device``: fall back to a CPU device (PoCL) when no GPU is present; False makes
    a machine without an OpenCL GPU an error instead of a silent CPU run.
    """

    allow_cpu_device: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.allow_cpu_device, bool):
            raise ValueError(f"allow_cpu_device must be a bool, got {self.allow_cpu_device!r}")


def device_kind(device: cl.Device) -> str:
    """``"GPU"``, ``"CPU"`` or ``"ACCELERATOR"`` (joined with ``|`` if several bits are set).

    pyopencl's ``device_type.to_string`` calls PoCL's CPU|DEFAULT device "ALL | CPU".
    """
    kinds = [name for name, bit in (("GPU", cl.device_type.GPU), ("CPU", cl.device_type.CPU),
                                    ("ACCELERATOR", cl.device_type.ACCELERATOR))
             if device.type & bit]
    return " | ".join(kinds) or cl.device_type.to_string(device.type)


def has_fp64(device: cl.Device) -> bool:
    return "cl_khr_fp64" in device.extensions.split()


def list_devices() -> list[cl.Device]:
    """Every device of every platform; empty (not an error) when no platform is installed."""
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # the ICD loader reports "no platform" as an error
        log.info("no OpenCL platform: %s", exc)
        return []
    devices = []
    for platform in platforms:
        try:
            devices.extend(platform.get_devices())
        except cl.Error as exc:
            log.info("OpenCL platform %r lists no devices: %s", platform.name, exc)
    return devices


def choose_device(config: OpenClConfig) -> cl.Device:
    """The first fp64-capable GPU device, else the first CPU device if allowed."""
    devices = list_devices()
    usable = [d for d in devices if has_fp64(d)]
    for d in (d for d in devices if d not in usable):
        log.warning("OpenCL device %r lacks cl_khr_fp64: not used", d.name)
    for kind in _PREFERENCE:
        if kind == cl.device_type.CPU and not config.allow_cpu_device:
            break
        match = [d for d in usable if d.type & kind]
        if match:
            return match[0]
    seen = ", ".join(f"{d.name} ({device_kind(d)})" for d in devices) or "none"
    allowed = "a GPU or CPU device" if config.allow_cpu_device else "a GPU device"
    raise NoOpenClDevice(f"no OpenCL device fits: need {allowed} with cl_khr_fp64; "
                         f"found {seen}")


# --- PoCL on CPUs newer than its LLVM ------------------------------------------------------------
#: PoCL 3.0 (the build inside the pyopencl wheels) links LLVM 14, which names CPUs it does not know
#: (e.g. AMD family 26, Zen 5) "generic", a name clang then rejects: every kernel build fails with
#: "unknown target CPU 'generic'" (pocl/pocl#1049) and PoCL 3.0 has no setting to override it.
_POCL_UNKNOWN_CPU = "unknown target CPU 'generic'"
#: CPU flag -> an LLVM CPU with the features of the kernel-library variant PoCL picks from the
#: same flags (its "distro" build ships avx512, avx2, avx_fma4, avx_f16c, avx, sse41, ssse3 and
#: sse2 variants), best first.
_POCL_CPU_FOR_FLAG = (("avx512f", "skylake-avx512"), ("avx2", "haswell"), ("fma4", "bdver1"),
                      ("f16c", "ivybridge"), ("avx", "sandybridge"), ("sse4_1", "penryn"),
                      ("ssse3", "core2"))
_PROBE_SOURCE = "__kernel void probe(__global int *a) { a[get_global_id(0)] = 1; }"


def _host_cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def _llvm_cpu_for_host() -> str:
    flags = _host_cpu_flags()
    return next((cpu for flag, cpu in _POCL_CPU_FOR_FLAG if flag in flags), "x86-64")


def _repoint_pocl_llvm_cpu(device: cl.Device, cpu: str) -> None:
    """Make PoCL's device record name ``cpu`` instead of "generic" as its LLVM target CPU.

    The record (``struct _cl_device_id``, behind the cl_device_id handle) holds a ``char *``
    to "generic". It is found by scanning the record's first 2 KiB for the one pointer to that
    exact string, read through /proc/self/mem so that stray words are never dereferenced, and
    replaced by a malloc'd copy of ``cpu`` (PoCL may free it). Anything but exactly one match
    leaves the record untouched and raises.
    """
    libc = ctypes.CDLL(None)
    libc.strdup.restype = ctypes.c_void_p
    libc.strdup.argtypes = [ctypes.c_char_p]
    base = device.int_ptr
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        def read(addr: int, size: int) -> bytes | None:
            if not 4096 <= addr < 1 << 47:
                return None
            try:
                return os.pread(mem.fileno(), size, addr)
            except OSError:
                return None

        record = read(base, 2048) or b""
        words = struct.unpack(f"<{len(record) // 8}Q", record[: len(record) // 8 * 8])
        hits = [8 * i for i, p in enumerate(words) if read(p, 8) == b"generic\0"]
    if len(hits) != 1:
        raise NoOpenClDevice(f"PoCL device {device.name!r}: cannot locate its LLVM CPU name "
                             f"({len(hits)} candidates)")
    ctypes.c_void_p.from_address(base + hits[0]).value = libc.strdup(cpu.encode())


def _check_builds(context: cl.Context, device: cl.Device) -> str | None:
    """Build a probe kernel; repair PoCL's unknown-CPU failure. Returns a note if repaired."""
    try:
        cl.Program(context, _PROBE_SOURCE).build()
        return None
    except cl.RuntimeError as exc:
        pocl = "Portable Computing Language" in device.platform.name
        if _POCL_UNKNOWN_CPU not in str(exc) or not pocl or not sys.platform.startswith("linux"):
            raise NoOpenClDevice(f"{device.name!r} cannot build OpenCL kernels: {exc}") from exc
    cpu = _llvm_cpu_for_host()
    _repoint_pocl_llvm_cpu(device, cpu)
    try:
        cl.Program(context, _PROBE_SOURCE).build()
    except cl.RuntimeError as exc:
        raise NoOpenClDevice(f"{device.name!r} cannot build OpenCL kernels even with LLVM CPU "
                             f"{cpu!r}: {exc}") from exc
    note = (f"PoCL's LLVM does not know this CPU ({_POCL_UNKNOWN_CPU}); kernels built for "
            f"LLVM CPU {cpu!r}, the target of the kernel library PoCL picked")
    log.warning("%s: %s", device.name, note)
    return note


@dataclass
class OpenClRuntime:
    """One device's context, in-order queue, memory pool and program cache."""

    device: cl.Device
    context: cl.Context
    queue: cl.CommandQueue
    allocator: cl_tools.MemoryPool
    _programs: dict[tuple[str, str], cl.Program] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Workarounds applied to make the device usable (reports may quote them).
    notes: tuple[str, ...] = ()
    #: Seconds spent building each program (first request in this process), for reports.
    build_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """``OpenCL <platform> / <device name> (<type>)``: what reports print as the device."""
        return (f"OpenCL {self.device.platform.name.strip()} / {self.device.name.strip()} "
                f"({device_kind(self.device)})")

    @property
    def is_cpu(self) -> bool:
        return bool(self.device.type & cl.device_type.CPU)

    def program(self, name: str, defines: dict[str, int] | None = None) -> cl.Program:
        """``kernels/<name>.cl`` built for this device with ``-D`` defines, cached per process."""
        options = " ".join(f"-D{k}={v}" for k, v in sorted((defines or {}).items()))
        with self._lock:
            key = (name, options)
            if key not in self._programs:
                source = (KERNEL_DIR / f"{name}.cl").read_text()
                start = time.perf_counter()
                self._programs[key] = cl.Program(self.context, source).build(options=options)
                self.build_seconds[name] = time.perf_counter() - start
                log.info("built OpenCL program %s [%s] for %s in %.2f s", name, options,
                         self.description, self.build_seconds[name])
            return self._programs[key]

    def to_device(self, array: np.ndarray) -> cla.Array:
        """``array`` in a new device buffer (a blocking copy, counted after the queue's
        earlier work)."""
        host = np.ascontiguousarray(array)
        self.queue.finish()
        with timed(COPY, True, host.nbytes):
            return cla.to_device(self.queue, host, allocator=self.allocator)

    def to_host(self, array: cla.Array) -> np.ndarray:
        """``array`` back in host memory (a blocking copy, counted; the queue is drained
        first, so the time is the copy's, not the kernels' that produced ``array``)."""
        self.queue.finish()
        with timed(COPY, False, array.nbytes):
            return array.get()

    def write(self, buffer: cla.Array, host: np.ndarray) -> None:
        """Overwrite ``buffer`` with ``host`` (a blocking copy, counted after the queue's
        earlier work)."""
        self.queue.finish()
        with timed(COPY, True, host.nbytes):
            cl.enqueue_copy(self.queue, buffer.data, host, is_blocking=True)

    def empty(self, shape: int | tuple[int, ...], dtype: np.dtype | type) -> cla.Array:
        return cla.empty(self.queue, shape, dtype, allocator=self.allocator)

    def columns_to_device(self, columns: Sequence[np.ndarray]) -> cla.Array:
        """Equal-length float64 columns as one (n_columns, n) device array (one upload)."""
        return self.to_device(np.stack([np.asarray(c, np.float64) for c in columns]))


def get_runtime(config: OpenClConfig | None = None) -> OpenClRuntime:
    """The process-wide runtime of the device ``config`` selects (one context per device)."""
    return _runtime_on(choose_device(config if config is not None else OpenClConfig()))


@cache
def _runtime_on(device: cl.Device) -> OpenClRuntime:
    context = cl.Context([device])
    queue = cl.CommandQueue(context)
    note = _check_builds(context, device)
    runtime = OpenClRuntime(device=device, context=context, queue=queue,
                            allocator=cl_tools.MemoryPool(cl_tools.ImmediateAllocator(queue)),
                            notes=() if note is None else (note,))
    log.info("OpenCL runtime on %s", runtime.description)
    return runtime


#: Work-group size of every launch. Fixed rather than left to the driver: PoCL compiles a
#: work-group function per local size at the first launch (~0.1-0.4 s each), so a size that
#: followed the event size would recompile for new event sizes; 64 fills a warp or wavefront.
WORK_GROUP = 64


def ndrange(n: int) -> tuple[tuple[int], tuple[int]]:
    """(global, local) sizes covering ``n`` work items; kernels return early for the padding."""
    return (max(1, -(-n // WORK_GROUP)) * WORK_GROUP,), (WORK_GROUP,)
