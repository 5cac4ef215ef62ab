"""The CKF's navigation on a torch device: ``taas.tracking.navigation``'s two queries, batched.

``Navigation.next_layer`` and ``Navigation.candidate_modules`` run as numba loops over
candidates on the host. ``NavigationTensors`` holds the same layers and module grids on a torch
device and answers the same queries there, from the same formulas
(``taas.tracking.batched.formulas``: ``barrel_crossing``, ``endcap_crossing``, ``world_path``,
``module_window``, torch flavour), so a CKF on the GPU can navigate where its candidates are, as
traccc's does. What differs is only the loop structure:

* next layer: every (candidate, layer) pair is solved at once, a (n, layers) table, and the
  nearest crossing before the world boundary wins (the numba loop skips barrel layers that
  cannot beat the nearest so far; the answer is the same, ties going to the lower layer);
* candidate modules: each candidate's bin window is expanded into its bins and their module
  lists, then repeats are dropped keeping each module's first listing, which is the order the
  numba loop writes them in.

States are track-axis-last, as the torch formulas take them: free states (8, n), positions and
directions (3, n). ``tests/tracking/test_navigation_tensors.py`` holds both to the same
answers on states spread over the TrackML detector.
"""

from __future__ import annotations

import numpy as np
import torch

from taas.tracking.batched.torch_arrays import TorchArrays
from taas.tracking.batched.torch_ops import FORMULAS as F
from taas.tracking.navigation import BARREL, ENDCAP, Navigation


class NavigationTensors:
    """A ``Navigation``'s layers and module grids on one torch device (built once)."""

    def __init__(self, navigation: Navigation, arrays: TorchArrays) -> None:
        self.arrays, self.device = arrays, arrays.device

        def put(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

        self.module_layer = put(navigation.module_layer, torch.int64)
        self.endcap = put(navigation.kind == ENDCAP, torch.bool)
        self.barrel_layers = put(np.flatnonzero(navigation.kind == BARREL), torch.int64)
        self.endcap_layers = put(np.flatnonzero(navigation.kind == ENDCAP), torch.int64)
        self.ref, self.lo, self.hi = put(navigation.ref), put(navigation.lo), put(navigation.hi)
        self.half = put(navigation.half_thickness)
        self.n_phi, self.n_2 = put(navigation.n_phi, torch.int64), put(navigation.n_2, torch.int64)
        self.lo2, self.hi2 = put(navigation.lo2), put(navigation.hi2)
        self.first_bin = put(navigation.first_bin, torch.int64)
        self.bin_offsets = put(navigation.bin_offsets, torch.int64)
        self.bin_modules = put(navigation.bin_modules, torch.int64)
        self.n_modules = len(navigation.module_layer)
        self.margin, self.world_r, self.world_z = (navigation.margin, navigation.world_r,
                                                   navigation.world_z)

    @property
    def n_layers(self) -> int:
        return len(self.ref)

    def next_layer(self, free: torch.Tensor, h: torch.Tensor, s_min: torch.Tensor,
                   exclude: torch.Tensor, s_max: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``Navigation.next_layer`` of free states (8, n) turning at ``h`` (n,) rad/mm:
        ``(layer, s)``, layer -1 and s inf where no layer is crossed before the world's end or
        ``s_max``; ``exclude`` (n,) a layer per state never to return (-1: none)."""
        n = free.shape[1]
        x0, y0, z0, tx, ty, tz = (free[k][:, None] for k in (0, 1, 2, 4, 5, 6))
        h_col, s_min_col = h[:, None], s_min[:, None]
        path = torch.full((n, self.n_layers), torch.inf, dtype=free.dtype, device=self.device)
        b, e = self.barrel_layers, self.endcap_layers
        path[:, b] = F.barrel_crossing(x0, y0, z0, tx, ty, tz, h_col, s_min_col, self.ref[b],
                                       self.lo[b], self.hi[b], self.half[b], self.margin)
        path[:, e] = F.endcap_crossing(x0, y0, z0, tx, ty, tz, h_col, s_min_col, self.ref[e],
                                       self.lo[e], self.hi[e], self.half[e], self.margin)
        rows = torch.nonzero(exclude >= 0).flatten()
        path[rows, exclude[rows]] = torch.inf
        world = F.world_path(free[0], free[1], free[2], free[4], free[5], free[6], h,
                             self.world_r, self.world_z, s_max)
        best, layer = path.min(dim=1)
        hit = best < world
        return torch.where(hit, layer, -1), torch.where(hit, best, torch.inf)

    def candidate_modules(self, layer: torch.Tensor, xyz: torch.Tensor, direction: torch.Tensor,
                          tolerance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``Navigation.candidate_modules`` of reference crossings ``xyz`` (3, n) with
        ``direction`` (3, n) on ``layer`` (n,): CSR ``(offsets (n + 1,), module rows)``."""
        n_phi, n_2 = self.n_phi[layer], self.n_2[layer]
        window = F.module_window(xyz[0], xyz[1], xyz[2], direction[0], direction[1],
                                 direction[2], self.endcap[layer], self.half[layer], tolerance,
                                 n_phi.to(xyz.dtype), n_2.to(xyz.dtype), self.lo2[layer],
                                 self.hi2[layer])
        i_lo, i_hi, j_lo, j_hi = (w.to(torch.int64) for w in window)
        n_i, n_j = (i_hi - i_lo + 1).clamp_min(0), (j_hi - j_lo + 1).clamp_min(0)
        # every bin of every window, phi-major as the numba loop visits them
        owner, k = self.arrays.entries(n_i * n_j)
        n_j_of = n_j[owner]
        bins = (self.first_bin[layer[owner]]
                + (i_lo[owner] + k // n_j_of) % n_phi[owner] * n_2[owner]
                + j_lo[owner] + k % n_j_of)
        # every module listed in those bins, then each (candidate, module) once: its first
        start = self.bin_offsets[bins]
        in_bin, q = self.arrays.entries(self.bin_offsets[bins + 1] - start)
        cand = owner[in_bin]
        modules = self.bin_modules[start[in_bin] + q]
        _, inverse = torch.unique(cand * self.n_modules + modules, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(inverse),
                           dtype=torch.int64, device=self.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(inverse), device=self.device),
                                     "amin")
        keep = torch.sort(first).values
        counts = torch.bincount(cand[keep], minlength=len(layer))
        offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        return offsets, modules[keep]

