"""Greedy ambiguity resolution: drop tracks that share too many measurements.

The CKF finds several candidates per particle (one per seed) plus a few built from another
particle's measurements. Following the greedy solver of ACTS/traccc (``GreedyAmbiguityResolution``,
``greedy_ambiguity_resolution_algorithm``), the track with the largest fraction of shared
measurements is removed, ties going to the worse chi2/ndf, until no track shares more than
``max_shared`` measurements. Survivors are passed on as proto-tracks for the final fit.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from taas.edm import ProtoTracks, Tracks
from taas.edm.tracks import take_lists


@dataclass(frozen=True)
class AmbiguityConfig:
    """Cuts of the greedy solver (defaults: ACTS' full-chain example for the Generic detector)."""

    max_shared: int = 3
    min_measurements: int = 7
    max_iterations: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_shared < 0:
            raise ValueError(f"max_shared must be >= 0, got {self.max_shared}")
        if self.min_measurements < 1:
            raise ValueError(f"min_measurements must be >= 1, got {self.min_measurements}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")


@numba.njit(cache=True)
def greedy_select(offsets: np.ndarray, indices: np.ndarray, quality: np.ndarray,
                  n_measurements: int, max_shared: int, max_iterations: int) -> np.ndarray:
    """Boolean mask of surviving tracks. ``quality``: lower is better (chi2/ndf)."""
    n_tracks = len(offsets) - 1
    alive = np.ones(n_tracks, dtype=np.bool_)
    users = np.zeros(n_measurements, dtype=np.int64)
    for t in range(n_tracks):
        for k in range(offsets[t], offsets[t + 1]):
            users[indices[k]] += 1
    # inverse lists: the tracks using each measurement
    meas_offsets = np.zeros(n_measurements + 1, dtype=np.int64)
    meas_offsets[1:] = np.cumsum(users)
    fill = meas_offsets[:-1].copy()
    meas_tracks = np.empty(meas_offsets[-1], dtype=np.int64)
    for t in range(n_tracks):
        for k in range(offsets[t], offsets[t + 1]):
            meas_tracks[fill[indices[k]]] = t
            fill[indices[k]] += 1
    shared = np.zeros(n_tracks, dtype=np.int64)
    for t in range(n_tracks):
        for k in range(offsets[t], offsets[t + 1]):
            if users[indices[k]] > 1:
                shared[t] += 1
    # Lazy max-heap on (shared fraction, chi2/ndf): shared counts only fall, so an entry whose
    # fraction is out of date is re-pushed with the current one when it reaches the top. This
    # keeps the solver O((tracks + updates) log tracks) instead of a scan per removal.
    heap = [(0.0, 0.0, np.int64(0)) for _ in range(0)]
    for t in range(n_tracks):
        if shared[t] > max_shared:
            heap.append((-shared[t] / (offsets[t + 1] - offsets[t]), -quality[t], np.int64(t)))
    heapq.heapify(heap)
    iterations = 0
    while heap and iterations < max_iterations:
        neg_frac, neg_quality, worst = heapq.heappop(heap)
        if not alive[worst] or shared[worst] <= max_shared:
            continue
        frac = shared[worst] / (offsets[worst + 1] - offsets[worst])
        if frac < -neg_frac:
            heapq.heappush(heap, (-frac, neg_quality, worst))
            continue
        iterations += 1
        alive[worst] = False
        for k in range(offsets[worst], offsets[worst + 1]):
            m = indices[k]
            users[m] -= 1
            if users[m] == 1:  # the one remaining user no longer shares m
                for j in range(meas_offsets[m], meas_offsets[m + 1]):
                    if alive[meas_tracks[j]]:
                        shared[meas_tracks[j]] -= 1
    return alive


#: A greedy solver: ``greedy_select``'s arguments -> the survivor mask (the numba solver here,
#: ``taas.tracking.batched.ambiguity.TorchGreedySolver`` on an accelerator).
GreedySolver = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int, int], np.ndarray]


def resolve_ambiguities(tracks: Tracks, config: AmbiguityConfig,
                        solver: GreedySolver = greedy_select) -> ProtoTracks:
    """The measurement lists of the tracks that survive the greedy ``solver``, in input
    order."""
    offsets, indices = tracks["meas_offsets"], tracks["meas_indices"]
    keep = np.diff(offsets) >= config.min_measurements
    quality = tracks["chi2"] / np.maximum(tracks["ndf"], 1)
    n_meas = int(indices.max()) + 1 if len(indices) else 0
    if keep.any():
        sel = np.flatnonzero(keep)
        sub_offsets, sub_indices = take_lists(offsets, indices, np.flatnonzero(keep))
        alive = solver(sub_offsets, sub_indices, quality[sel].astype(np.float64), n_meas,
                       config.max_shared, config.max_iterations)
        keep[sel[~alive]] = False
    out_offsets, out_indices = take_lists(offsets, indices, np.flatnonzero(keep))
    return ProtoTracks(offsets=out_offsets, indices=out_indices)
