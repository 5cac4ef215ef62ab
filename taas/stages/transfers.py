"""Host <-> device traffic of a pipeline's stages: one place that counts, times and labels it.

Every place where a stage moves a tensor between host memory and its device goes through a
``TransferCounter`` or a ``DeviceTensors`` (torch stages; ``taas.stages.device_tensors``, which
holds everything that needs torch) or, for code with its own copy calls (the OpenCL runtime),
through ``timed``, so the chain's traffic is stated, not guessed. This module imports no torch:
the ``cpu`` chain and its processes never load it. Two kinds of crossing are told apart:

* ``copy``: the bytes really move -- a torch CUDA device, or an OpenCL buffer (even PoCL on the
  CPU copies between host arrays and its buffers). Timed with synchronisation on CUDA (the
  queue is drained before and after, so the time is the copy's, not the kernels' before it).
* ``handover``: a numpy <-> torch crossing on the CPU device. ``torch.as_tensor`` and
  ``.numpy()`` share memory, so nothing is copied: handovers carry zero copy bytes. They are
  counted anyway, so that the CPU CI checks the same bookkeeping a GPU run fills with copies.

``Pipeline.run`` opens a ``StageTraffic`` collector around each stage (``collecting``); every
counter records into the active collector as well as into its own totals, so a stage's copies
reach the run's ledger without the stage knowing about the pipeline. Outside a pipeline (a
Triton per-stage model, a test) nothing is collected and the counters keep their own totals.

``DeviceTensors`` (``taas.stages.device_tensors``) is the device-side pool of one torch device;
``Pipeline`` keeps one per device across a run (residency), for the stages that are a
``ResidentStage``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from taas.stages.device_tensors import DeviceTensors

COPY = "copy"
HANDOVER = "handover"
#: A stage on a non-host backend that does not count its traffic (its row says so, rather than
#: claiming zero copies).
NOT_COUNTED = "not counted"


def kind_of(device: torch.device) -> str:
    """``copy`` for a crossing to or from ``device`` when bytes move, ``handover`` when the
    host and ``device`` share memory (the torch CPU device)."""
    return HANDOVER if device.type == "cpu" else COPY


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing to wait for on the CPU device."""
    if device.type == "cuda":
        import torch  # loaded already: whoever holds a torch device imported it

        torch.cuda.synchronize(device)


@dataclass
class Traffic:
    """Crossings of one kind by one stage on one event: tensors and bytes each way, seconds."""

    to_device: int = 0  #: tensors moved host -> device
    to_device_bytes: int = 0  #: bytes copied host -> device (0 for handovers)
    to_host: int = 0  #: tensors moved device -> host
    to_host_bytes: int = 0  #: bytes copied device -> host (0 for handovers)
    to_device_seconds: float = 0.0  #: time in host -> device crossings (synchronised on CUDA)
    to_host_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.to_device_seconds + self.to_host_seconds

    def add(self, to_device: bool, nbytes: int, seconds: float) -> None:
        if to_device:
            self.to_device += 1
            self.to_device_bytes += nbytes
            self.to_device_seconds += seconds
        else:
            self.to_host += 1
            self.to_host_bytes += nbytes
            self.to_host_seconds += seconds


@dataclass
class StageTraffic:
    """What one stage moved on one event, per kind of crossing (the ledger's collector)."""

    by_kind: dict[str, Traffic] = field(default_factory=dict)

    def record(self, kind: str, to_device: bool, nbytes: int, seconds: float) -> None:
        """One crossing; handovers keep their tensor count and time but no copy bytes."""
        if kind not in (COPY, HANDOVER):
            raise ValueError(f"crossing kind must be {COPY!r} or {HANDOVER!r}, got {kind!r}")
        traffic = self.by_kind.setdefault(kind, Traffic())
        traffic.add(to_device, nbytes if kind == COPY else 0, seconds)


_ACTIVE: ContextVar[StageTraffic | None] = ContextVar("taas_stage_traffic", default=None)


@contextlib.contextmanager
def collecting(traffic: StageTraffic | None = None) -> Iterator[StageTraffic]:
    """Record every counted crossing made inside the block (this thread) into ``traffic``."""
    traffic = traffic if traffic is not None else StageTraffic()
    token = _ACTIVE.set(traffic)
    try:
        yield traffic
    finally:
        _ACTIVE.reset(token)


def timed(kind: str, to_device: bool, nbytes: int, device: torch.device | None = None
          ) -> contextlib.AbstractContextManager[None]:
    """Time the crossing inside the block (draining ``device``'s queue before and after) and
    record it into the active collector, if any (for code without its own counter, e.g. the
    OpenCL runtime)."""
    return TimedCrossing(kind, to_device, nbytes, device, None)


class TimedCrossing(contextlib.AbstractContextManager[None]):
    """One crossing, timed (``device`` drained before and after) and recorded into
    ``counter`` (if any) and the active collector."""

    def __init__(self, kind: str, to_device: bool, nbytes: int, device: torch.device | None,
                 counter: Traffic | None) -> None:
        self.kind, self.to_device, self.nbytes = kind, to_device, nbytes
        self.device, self.counter, self.start = device, counter, 0.0

    def __enter__(self) -> None:
        if self.device is not None:
            synchronize(self.device)
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.device is not None:
            synchronize(self.device)
        seconds = time.perf_counter() - self.start
        if self.counter is not None:
            self.counter.add(self.to_device, self.nbytes, seconds)
        active = _ACTIVE.get()
        if active is not None:
            active.record(self.kind, self.to_device, self.nbytes, seconds)


@runtime_checkable
class ResidentStage(Protocol):
    """A torch stage that can take its inputs from, and leave its outputs in, a
    ``DeviceTensors`` of its device (``Pipeline`` with residency). Its numpy ``compute`` must
    be ``compute_on_device`` on a fresh ``DeviceTensors`` with every output downloaded, so
    both paths give identical outputs."""

    torch_device: torch.device

    def compute_on_device(self, tensors: DeviceTensors
                          ) -> Mapping[str, torch.Tensor | np.ndarray]: ...
