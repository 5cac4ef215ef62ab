"""Torch's side of the copy ledger (``taas.stages.transfers``): counted crossings between
numpy and torch devices, and device residency.

``TransferCounter`` moves and counts single tensors (``to_device_tensor`` / ``to_host_array``,
or ``upload`` / ``download`` in the batched track layout); ``DeviceTensors`` is the device-side
pool of one torch device that resident stages (``taas.stages.transfers.ResidentStage``: the GNN
stages, track building, the bridge and its CKF) read from and leave their outputs in. Kept
apart from the ledger so that a chain without torch stages (the ``cpu`` pipeline, its Triton
models, the CLI) never imports torch: that import is seconds of every process's start and
hundreds of MB per Triton model instance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping

import numpy as np
import torch

from taas.edm.table import TensorSpec
from taas.errors import TaasError
from taas.stages.transfers import ResidentStage, TimedCrossing, Traffic, kind_of

#: What a resident stage returns: device tensors (left on the device) and host arrays.
DeviceOutputs = Mapping[str, torch.Tensor | np.ndarray]


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
        with TimedCrossing(kind_of(device), True, _nbytes(host), device, self):
            return torch.as_tensor(host, device=device, dtype=dtype)

    def to_host_array(self, tensor: torch.Tensor) -> np.ndarray:
        """``tensor`` as a numpy array on the host, counted once."""
        with TimedCrossing(kind_of(tensor.device), False, _nbytes(tensor), tensor.device, self):
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


def compute_via_device(stage: ResidentStage, inputs: dict[str, np.ndarray]
                       ) -> dict[str, np.ndarray]:
    """The numpy ``compute`` of a resident stage: its inputs uploaded (counted) into a fresh
    ``DeviceTensors``, its device outputs downloaded (counted)."""
    tensors = DeviceTensors(dict(inputs), stage.torch_device)
    out = stage.compute_on_device(tensors)
    return {name: (tensors.counter.to_host_array(value) if isinstance(value, torch.Tensor)
                   else value) for name, value in out.items()}

