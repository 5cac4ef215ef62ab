"""Host <-> device traffic of a pipeline's stages: one place that counts, times and labels it.

Every place where a stage moves a tensor between host memory and its device goes through a
``TransferCounter`` (``to_device_tensor`` / ``to_host_array``, or ``upload`` / ``download`` in
the batched track layout), through ``DeviceTensors`` (the GNN and track-building stages, which
use a counter) or, for code with its own copy calls (the OpenCL runtime), through ``timed``, so
the chain's traffic is stated, not guessed. Two kinds of crossing are told apart:

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

``DeviceTensors`` is the device-side pool of one torch device: named tensors a torch stage
takes (uploading, counted, what is not there yet) and leaves there. ``Pipeline`` keeps one per
device across a run (residency): consecutive stages on the device then hand over tensors
without copies, and the host copy of a tensor is made only when a host stage or the caller
needs it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from taas.edm.table import TensorSpec
from taas.errors import TaasError

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
    return _Timed(kind, to_device, nbytes, device, None)


class _Timed(contextlib.AbstractContextManager[None]):
    def __init__(self, kind: str, to_device: bool, nbytes: int, device: torch.device | None,
                 counter: TransferCounter | None) -> None:
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


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class TransferCounter(Traffic):
    """Host <-> torch-device crossings (tensors, bytes, seconds) since the last ``reset``.

    Its own totals count every crossing with the bytes it carries, on any device (on the CPU
    device those bytes are shared, not copied: the CKF's ``transfers`` report them so); the
    active ``StageTraffic`` gets the same crossings labelled ``copy`` or ``handover``
    (``kind_of``), handovers without bytes.
    """

    def reset(self) -> None:
        self.to_device = self.to_device_bytes = self.to_host = self.to_host_bytes = 0
        self.to_device_seconds = self.to_host_seconds = 0.0

    def summary(self) -> dict[str, int]:
        """Tensors and bytes each way (seconds apart: they are no count)."""
        return {"to_device": self.to_device, "to_device_bytes": self.to_device_bytes,
                "to_host": self.to_host, "to_host_bytes": self.to_host_bytes}

    def to_device_tensor(self, array: np.ndarray | torch.Tensor, device: torch.device,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
        """``array`` as a tensor on ``device`` (as ``torch.as_tensor``), counted once."""
        host = torch.as_tensor(np.ascontiguousarray(array) if isinstance(array, np.ndarray)
                               else array)
        with _Timed(kind_of(device), True, _nbytes(host), device, self):
            return torch.as_tensor(host, device=device, dtype=dtype)

    def to_host_array(self, tensor: torch.Tensor) -> np.ndarray:
        """``tensor`` as a numpy array on the host, counted once."""
        with _Timed(kind_of(tensor.device), False, _nbytes(tensor), tensor.device, self):
            return tensor.detach().cpu().numpy()

    def upload(self, array: np.ndarray, device: torch.device,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """``array`` (K, ...) on ``device`` in the batched layout (..., K) of
        ``taas.tracking.batched``, counted once."""
        tensor = self.to_device_tensor(array, device, dtype)
        return tensor.movedim(0, -1).contiguous() if tensor.dim() > 1 else tensor

    def download(self, tensor: torch.Tensor) -> np.ndarray:
        """``tensor`` (..., K) of the batched layout back on the host as (K, ...), counted
        once."""
        if tensor.dim() > 1:
            tensor = tensor.movedim(-1, 0)
        return self.to_host_array(tensor.contiguous())


# --- device residency ---------------------------------------------------------------------------
#: numpy dtype of each torch dtype a stage output may have (checked against its TensorSpec)
_NUMPY_DTYPE = {torch.float64: np.dtype("f8"), torch.float32: np.dtype("f4"),
                torch.int64: np.dtype("i8"), torch.int32: np.dtype("i4"),
                torch.bool: np.dtype("?"), torch.uint8: np.dtype("u1")}


def check_on_device(spec: TensorSpec, tensor: torch.Tensor, *, owner: str) -> torch.Tensor:
    """``TensorSpec.check`` for a tensor that stays on its device: dtype and shape must match
    exactly (a stage's own outputs; nothing is cast, so the host copy made later is what the
    host path would have produced)."""
    dtype = _NUMPY_DTYPE.get(tensor.dtype)
    shape = tuple(tensor.shape)
    if dtype != spec.dtype or len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)):
        raise TaasError(f"{owner}: device tensor {spec.name!r} is {tensor.dtype} {shape}, "
                        f"declared {spec.dtype} {spec.shape}")
    return tensor


class DeviceTensors:
    """Named tensors on one torch device, taken from a host pool on first use.

    ``get`` gives a tensor on the device: the one already there, else the host array uploaded
    (counted) and kept, so a second reader does not upload it again. ``put`` leaves a stage's
    output there. ``host`` gives the numpy array: the host pool's, else the device tensor
    downloaded (counted) and kept. A stage call outside a pipeline uses a fresh one per call
    (everything uploaded, outputs downloaded: the numpy stage API); ``Pipeline`` keeps one per
    device for a whole event.
    """

    def __init__(self, host: MutableMapping[str, np.ndarray], device: torch.device) -> None:
        self.host_pool = host
        self.device = device
        self.on_device: dict[str, torch.Tensor] = {}
        self.counter = TransferCounter()
        #: The current stage's host inputs as its specs cast them (``Pipeline`` sets them per
        #: stage), read before the pool so that an upload is what the numpy path uploads.
        self.host_inputs: Mapping[str, np.ndarray] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.on_device or name in self.host_pool

    def _host_value(self, name: str) -> np.ndarray:
        return self.host_inputs[name] if name in self.host_inputs else self.host_pool[name]

    def get(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Tensor ``name`` on the device (``dtype``: converted there, after the copy)."""
        tensor = self.on_device.get(name)
        if tensor is None:
            tensor = self.counter.to_device_tensor(self._host_value(name), self.device)
            self.on_device[name] = tensor
        return tensor if dtype is None else tensor.to(dtype)

    def length(self, name: str) -> int:
        """Rows of ``name`` wherever it is, without copying it."""
        tensor = self.on_device.get(name)
        return len(tensor) if tensor is not None else len(self._host_value(name))

    def put(self, name: str, tensor: torch.Tensor) -> None:
        """``tensor`` (on this device) as the latest ``name``; a host copy of an older
        ``name`` is dropped."""
        if tensor.device != self.device:
            raise TaasError(f"{name!r} is on {tensor.device}, not on {self.device}")
        self.on_device[name] = tensor
        self.host_pool.pop(name, None)

    def put_host(self, name: str, array: np.ndarray) -> None:
        """A host array as the latest ``name`` (an older device tensor is dropped)."""
        self.on_device.pop(name, None)
        self.host_pool[name] = array

    def host(self, name: str) -> np.ndarray:
        """Array ``name`` on the host, downloaded (counted) when only the device has it."""
        if name in self.host_inputs:
            return self.host_inputs[name]
        if name not in self.host_pool:
            self.host_pool[name] = self.counter.to_host_array(self.on_device[name])
        return self.host_pool[name]

    def device_only(self) -> list[str]:
        """Names whose latest value has no host copy yet."""
        return [n for n in self.on_device if n not in self.host_pool]

    def columns(self, prefix: str) -> Mapping[str, torch.Tensor]:
        """Lazy view of the tensors ``prefix.*`` (for code that reads columns by name)."""
        return _Columns(self, prefix)


class _Columns(Mapping[str, torch.Tensor]):
    """``DeviceTensors.get`` of ``prefix.name`` for each name asked for, nothing before."""

    def __init__(self, tensors: DeviceTensors, prefix: str) -> None:
        self.tensors, self.prefix = tensors, prefix

    def _names(self) -> list[str]:
        start = f"{self.prefix}."
        names = dict.fromkeys(n for n in (*self.tensors.host_pool, *self.tensors.on_device)
                              if n.startswith(start))
        return list(names)

    def __getitem__(self, key: str) -> torch.Tensor:
        name = key if key.startswith(f"{self.prefix}.") else f"{self.prefix}.{key}"
        if name not in self.tensors:
            raise KeyError(key)
        return self.tensors.get(name)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in self.tensors or f"{self.prefix}.{key}" in self.tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


#: What a resident stage returns: device tensors (left on the device) and host arrays.
DeviceOutputs = Mapping[str, torch.Tensor | np.ndarray]


@runtime_checkable
class ResidentStage(Protocol):
    """A torch stage that can take its inputs from, and leave its outputs in, a
    ``DeviceTensors`` of its device (``Pipeline`` with residency). Its numpy ``compute`` must
    be ``compute_on_device`` on a fresh ``DeviceTensors`` with every output downloaded, so
    both paths give identical outputs."""

    torch_device: torch.device

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs: ...


def compute_via_device(stage: ResidentStage, inputs: dict[str, np.ndarray]
                       ) -> dict[str, np.ndarray]:
    """The numpy ``compute`` of a resident stage: its inputs uploaded (counted) into a fresh
    ``DeviceTensors``, its device outputs downloaded (counted)."""
    tensors = DeviceTensors(dict(inputs), stage.torch_device)
    out = stage.compute_on_device(tensors)
    return {name: (tensors.counter.to_host_array(value) if isinstance(value, torch.Tensor)
                   else value) for name, value in out.items()}

