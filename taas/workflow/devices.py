"""What accelerators this machine has, probed cheaply at workflow start.

The workflow decides which backend each stage gets before any job runs, and must refuse a plan
the machine cannot run rather than substitute silently. Probing must not cost a torch import on
every ``snakemake -n``: CUDA is asked through the driver library (``libcuda``) directly, and
OpenCL through pyopencl's platform list, each only when the plan needs the answer.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from functools import cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Devices:
    """Accelerators found: CUDA devices (count) and OpenCL devices by kind (names)."""

    cuda: int = 0
    opencl_gpu: tuple[str, ...] = ()
    opencl_cpu: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def has_gpu(self) -> bool:
        return self.cuda > 0 or bool(self.opencl_gpu)

    def describe(self) -> str:
        parts = [f"{self.cuda} CUDA device(s)",
                 f"OpenCL GPU: {', '.join(self.opencl_gpu) or 'none'}",
                 f"OpenCL CPU: {', '.join(self.opencl_cpu) or 'none'}"]
        return "; ".join(parts)


def cuda_device_count() -> int:
    """CUDA devices the driver sees (0 without a driver), without importing torch."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def opencl_devices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(GPU device names, CPU device names) over every OpenCL platform; empty without one."""
    try:
        import pyopencl as cl
    except ImportError:
        return (), ()
    gpus, cpus = [], []
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        return (), ()
    for platform in platforms:
        try:
            devices = platform.get_devices()
        except cl.Error:
            continue
        for device in devices:
            if device.type & cl.device_type.GPU:
                gpus.append(device.name.strip())
            elif device.type & cl.device_type.CPU:
                cpus.append(device.name.strip())
    return tuple(gpus), tuple(cpus)


@cache
def probe() -> Devices:
    """This machine's accelerators (cached per process)."""
    gpus, cpus = opencl_devices()
    devices = Devices(cuda_device_count(), gpus, cpus)
    log.info("devices: %s", devices.describe())
    return devices
