"""``taas.tracking.arrays.ArrayOps`` in torch: array work on a torch device, every copy across
the host boundary counted (``taas.stages.device_tensors.TransferCounter``)."""

from __future__ import annotations

import numpy as np
import torch

from taas.detector.detector import Detector
from taas.stages.device_tensors import TransferCounter
from taas.tracking.arrays import Array, ArrayOps


class TorchArrays(ArrayOps):
    """``ArrayOps`` on a torch ``device``; ``transfers`` counts every copy across the host
    boundary. The detector's module geometry goes to the device once per detector
    (``geometry``; not counted per event)."""

    xp = torch

    def __init__(self, device: torch.device, *, note: str = "") -> None:
        self.device = device
        self.label = f"{device}{note}"
        self.transfers = TransferCounter()
        self._geometry: tuple[Detector, torch.Tensor, torch.Tensor] | None = None

    def upload(self, array: np.ndarray) -> Array:
        # the counter's upload moves the first axis last (the CKF's batched layout): hand it
        # the last axis first, so the tensor keeps the array's shape
        return self.transfers.upload(np.moveaxis(array, -1, 0) if array.ndim > 1 else array,
                                     self.device)

    def download(self, array: Array) -> np.ndarray:
        return self.transfers.download(array.movedim(0, -1) if array.dim() > 1 else array)

    def here(self, array: Array) -> Array:
        if isinstance(array, torch.Tensor):
            if array.device != self.device:
                raise ValueError(f"a tensor on {array.device}, not on {self.device}")
            return array
        return self.upload(array)

    def geometry(self, detector: Detector) -> tuple[Array, Array]:
        if self._geometry is None or self._geometry[0] is not detector:
            self._geometry = (detector, torch.as_tensor(detector.center, device=self.device),
                              torch.as_tensor(detector.rotation, device=self.device))
        return self._geometry[1], self._geometry[2]

    def stable_argsort(self, a: Array) -> Array:
        return torch.argsort(a, stable=True)

    def repeat(self, values: Array, counts: Array) -> Array:
        return torch.repeat_interleave(values, counts)

    def segment_sum(self, values: Array, segment: Array, n: int) -> Array:
        # torch.bincount gives integers for empty weights; index_add keeps the dtype
        return torch.zeros(n, dtype=values.dtype, device=self.device).index_add_(
            0, segment, values)

    def flatnonzero(self, mask: Array) -> Array:
        return torch.nonzero(mask).flatten()

    def unique(self, a: Array) -> Array:
        return torch.unique(a, sorted=True)
