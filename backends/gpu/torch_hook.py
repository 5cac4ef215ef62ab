"""What every GPU stage whose array work runs in torch behind a numpy stage API adds to its
stage base (a mixin before it): the device it ran on and the per-event count of its host <->
device copies.

The torch work (the CKF's ``TorchCkfKernels``, the bridge's ``TorchArrays``) is held as
``torch_work``: anything with a ``label`` (the device, with a note when CUDA was missing) and a
``transfers`` counter (``taas.stages.device_tensors.TransferCounter``), reset at each event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from taas.stages.device_tensors import TransferCounter


class TorchWork(Protocol):
    """The torch side of a stage: where it runs and what it copied."""

    label: str
    transfers: TransferCounter


@dataclass
class DeviceWork:
    """``TorchWork`` of a stage whose torch code takes a counter rather than holding one (the
    gpu track fit)."""

    label: str
    transfers: TransferCounter = field(default_factory=TransferCounter)


class TorchDeviceHook:
    """``device`` and ``transfers`` from ``torch_work``; each ``compute`` counts afresh."""

    COUNTS_TRANSFERS = True  # every copy of the torch work (taas.stages.transfers)
    torch_work: TorchWork

    @property
    def device(self) -> str:
        return self.torch_work.label

    @property
    def transfers(self) -> dict[str, int]:
        """Host <-> device copies of the latest event (tensors and bytes each way)."""
        return self.torch_work.transfers.summary()

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.torch_work.transfers.reset()
        out: dict[str, np.ndarray] = super().compute(inputs)  # type: ignore[misc]
        return out
