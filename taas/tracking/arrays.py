"""Array work written once for numpy and torch: the namespace a device hook hands its caller.

The traccc bridge (``traccc_bridge.bridge``) and the CKF's candidate bookkeeping
(``taas.tracking.ckf``) are written against ``ArrayOps``: ``xp`` for the functions numpy and
torch spell alike (``where``, ``diff``, ``cumsum(axis=0)``, ``concatenate``, ``isfinite``,
``linalg.norm``, ``searchsorted``, reductions with ``axis=``, creation with ``device=``), the
methods for what they spell differently. ``upload`` and ``download`` are the only ways across
the host boundary: the identity here (``HOST``, numpy); the torch subclass
(``taas.tracking.batched.torch_arrays.TorchArrays``) copies and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from taas.detector.detector import Detector

#: An array of ``ArrayOps.xp``: ``np.ndarray`` on the host, ``torch.Tensor`` on a device.
Array = Any


class ArrayOps:
    """Where array work runs: numpy on the host (this class, ``HOST``; module docstring)."""

    xp: ModuleType = np
    device: Any = "cpu"

    def upload(self, array: np.ndarray) -> Array:
        """A host array where the work runs."""
        return array

    def download(self, array: Array) -> np.ndarray:
        """An array of this namespace back on the host."""
        return np.asarray(array)

    def here(self, array: Array) -> Array:
        """``array`` where the work runs: as it is when it lives there already (a device
        stage's output), else uploaded."""
        return array

    def geometry(self, detector: Detector) -> tuple[Array, Array]:
        """The detector's module centres (n, 3) and rotations (n, 3, 3) where the work runs."""
        return detector.center, detector.rotation

    def stable_argsort(self, a: Array) -> Array:
        """The sorting permutation of ``a``; equal entries keep their order."""
        return np.argsort(a, kind="stable")

    def repeat(self, values: Array, counts: Array) -> Array:
        """``values[i]`` repeated ``counts[i]`` times, in order."""
        return np.repeat(values, counts)

    def segment_sum(self, values: Array, segment: Array, n: int) -> Array:
        """Per segment 0..n-1, the sum of the float ``values`` in it."""
        return np.bincount(segment, weights=values, minlength=n)

    def full(self, shape: tuple[int, ...], value: float, dtype: Any) -> Array:
        """A new array of ``value`` where the work runs."""
        return self.xp.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, n: int) -> Array:
        """0..n-1 (int64) where the work runs."""
        return self.xp.arange(n, dtype=self.xp.int64, device=self.device)

    def entries(self, counts: Array) -> tuple[Array, Array]:
        """For lists of ``counts`` entries, per entry: its list and its position there."""
        owner = self.repeat(self.arange(len(counts)), counts)
        firsts = self.xp.cumsum(counts, axis=0) - counts
        return owner, self.arange(len(owner)) - firsts[owner]

    def flatnonzero(self, mask: Array) -> Array:
        """Indices (int64) where ``mask`` is true."""
        return np.flatnonzero(mask)

    def unique(self, a: Array) -> Array:
        """The distinct values of ``a``, sorted."""
        return np.unique(a)

    def run_starts(self, ordered: Array) -> Array:
        """Mask of the entries of sorted ``ordered`` where a run of equal values starts (the
        first entry, and each that differs from the one before)."""
        starts = self.full((len(ordered),), True, self.xp.bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        return starts

    def lexsort(self, keys: Sequence[Array]) -> Array:
        """The permutation sorting by the last key, then the one before, ...; ties keep their
        order (numpy's ``lexsort``), from stable sorts of one key at a time."""
        order = self.stable_argsort(keys[0])
        for key in keys[1:]:
            order = order[self.stable_argsort(key[order])]
        return order


#: The host: numpy, no copies.
HOST = ArrayOps()


