"""The greedy ambiguity solver (``taas.tracking.ambiguity``) in torch, for the accelerator.

The CPU solver keeps a lazy max-heap in a numba loop and removes one track at a time: among the
live tracks that share more than ``max_shared`` measurements, the one with the largest shared
fraction, then the worst chi2/ndf, then the lowest index; the tracks left holding a
measurement it released share one fewer. One removal per step is what traccc's GPU greedy
solver does too, and on a device it costs a round of kernel launches per removed track. Here a
step removes every track that outranks all the tracks it shares a measurement with: such a
track is removed by the sequential solver too, before any of those neighbours (a track's rank
changes only when a neighbour goes, and ranks only fall), and no two of them are neighbours,
so their removals commute. Where ``max_iterations`` could bind (fewer than the tracks over the
limit), steps remove one track each in global order, so the cap cuts where the sequential
solver's does. Both devices
keep the same tracks (tested on the CPU device against the numba solver, ties included). The
inputs go up and the survivor mask comes down once per event, counted (``transfers``); each
step brings one stop test to the host.
"""

from __future__ import annotations

import numpy as np
import torch

from taas.stages.device_tensors import TransferCounter


class TorchGreedySolver:
    """``taas.tracking.ambiguity.greedy_select`` on a torch ``device``; ``label`` names the
    device (with a note when CUDA was wanted but missing), ``transfers`` counts the copies."""

    def __init__(self, device: torch.device, *, note: str = "") -> None:
        self.device = device
        self.label = f"{device}{note}"
        self.transfers = TransferCounter()

    def __call__(self, offsets: np.ndarray, indices: np.ndarray, quality: np.ndarray,
                 n_measurements: int, max_shared: int, max_iterations: int) -> np.ndarray:
        """Boolean mask of surviving tracks (the arguments of ``greedy_select``)."""
        n_tracks = len(offsets) - 1
        if n_tracks <= 0:
            return np.ones(max(n_tracks, 0), dtype=bool)
        up = self.transfers.to_device_tensor
        offsets_t = up(np.asarray(offsets, np.int64), self.device)
        meas = up(np.asarray(indices, np.int64), self.device)
        worse = up(np.asarray(quality, np.float64), self.device)
        alive = self._solve(offsets_t, meas, worse, n_measurements, max_shared, max_iterations)
        return self.transfers.to_host_array(alive)

    def _solve(self, offsets: torch.Tensor, meas: torch.Tensor, worse: torch.Tensor,
               n_measurements: int, max_shared: int, max_iterations: int) -> torch.Tensor:
        n_tracks = len(offsets) - 1
        lengths = offsets[1:] - offsets[:-1]
        owner = torch.repeat_interleave(torch.arange(n_tracks, device=self.device), lengths)
        users = torch.bincount(meas, minlength=n_measurements)
        shared = torch.zeros(n_tracks, dtype=torch.int64, device=self.device).index_add_(
            0, owner, (users[meas] > 1).to(torch.int64))
        alive = torch.ones(n_tracks, dtype=torch.bool, device=self.device)
        # only tracks over the limit at the start are ever removed (shares only fall): with
        # a cap above their number it cannot bind, else steps go one by one in global order
        # so that it cuts where the sequential solver's does
        in_steps = max_iterations >= int((shared > max_shared).sum())
        for _ in range(max_iterations):
            over = alive & (shared > max_shared)
            if not bool(over.any()):
                break
            rank = torch.where(over, self._rank(shared, lengths, worse), -1)
            if in_steps:
                remove = over & (self._neighbour_max(rank, meas, owner, n_measurements) == rank)
            else:
                remove = torch.zeros_like(over)
                remove[torch.argmax(rank)] = True
            alive &= ~remove
            released = meas[remove[owner]]
            users.index_add_(0, released, torch.full_like(released, -1))
            # a measurement left with one user is no longer shared by that (live) track
            freed = torch.zeros(n_measurements, dtype=torch.bool, device=self.device)
            freed[released[users[released] == 1]] = True
            holders = freed[meas] & alive[owner]
            shared.index_add_(0, owner[holders], torch.full_like(owner[holders], -1))
        return alive

    @staticmethod
    def _rank(shared: torch.Tensor, lengths: torch.Tensor, worse: torch.Tensor) -> torch.Tensor:
        """Each track's place in the removal order, highest first: the larger shared
        fraction (the same float as the numba solver's shared / length, so ties tie alike),
        then the worse chi2/ndf, then the lower index."""
        fraction = shared.to(torch.float64) / lengths.to(torch.float64)
        order = torch.arange(len(shared) - 1, -1, -1, device=shared.device)  # index, falling
        order = order[torch.argsort(worse[order], stable=True)]
        order = order[torch.argsort(fraction[order], stable=True)]
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=shared.device)
        return rank

    @staticmethod
    def _neighbour_max(rank: torch.Tensor, meas: torch.Tensor, owner: torch.Tensor,
                       n_measurements: int) -> torch.Tensor:
        """Per track, the highest ``rank`` among the tracks sharing a measurement with it
        (itself included)."""
        per_measurement = torch.full((n_measurements,), -1, dtype=rank.dtype,
                                     device=rank.device).scatter_reduce_(
            0, meas, rank[owner], "amax")
        return torch.full_like(rank, -1).scatter_reduce_(0, owner, per_measurement[meas],
                                                         "amax")
