"""Fixed-radius nearest neighbours (FRNN): the graph-building step after metric learning.

ACORN embeds every space point and joins each point to its neighbours closer than ``r`` in the
embedding, keeping at most ``k`` per point. Both functions here return the same directed edges
(``src`` = query point, ``dst`` = neighbour), with one definition everywhere:

* an edge ``i -> j`` exists when ``i != j`` and ``sum((x[i] - x[j])**2) < r**2``, computed in
  the input's floating-point precision (strict ``<``, so ``r = 0`` gives no edges);
* each query keeps its ``k`` nearest such neighbours;
* edges are sorted by ``src``, then by distance (nearest first), then by ``dst``.

Equal distances at the ``k``-th place are the only case where two backends may pick different
neighbours. The order is canonical, so on continuous data the CPU and torch answers are equal
arrays, which is what the tests check.

``frnn_cpu`` uses scipy's k-d tree. ``frnn_torch`` is the accelerator version: a cell list
(grid of cells of side ``r`` on a few dimensions), candidates gathered from the 3**g
neighbouring cells with ``searchsorted`` and filtered by the full distance, in chunks of bounded
size, so memory stays proportional to the candidates, never to N**2. Both search on the points'
principal axes (``principal_coordinates``; a rotation keeps every distance) and take the exact
distance from the points themselves.
"""

from __future__ import annotations

import itertools
import logging

import numba
import numpy as np
import torch
from scipy.spatial import cKDTree

from taas.gnn.frnn_kernel import frnn_kernel, kernel_applies

log = logging.getLogger(__name__)

#: Default bound on candidate pairs (CPU) or query x k slots (k-d tree) held at once.
DEFAULT_MAX_CANDIDATES = 1 << 22
#: The torch grid uses at most this many dimensions (3**6 = 729 neighbour cells per cell).
MAX_GRID_DIMS = 6
#: Cell side is r times this, so that float rounding of cell coordinates can never put two
#: points closer than r two cells apart.
_CELL_MARGIN = 1.0 + 1e-5
#: Measured cost of one candidate pair (gathers, distance, filter, sort) in cell look-ups.
_CANDIDATE_COST = 2.5


def _check(n: int, d: int, r: float, k: int) -> None:
    if d < 1:
        raise ValueError(f"points must have shape (n, d) with d >= 1, got d={d}")
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"radius must be finite and >= 0, got {r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _first_of_run(sorted_src: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Index of the first entry equal to each entry of a sorted array (numpy or torch)."""
    if isinstance(sorted_src, torch.Tensor):
        return torch.searchsorted(sorted_src, sorted_src)
    return np.searchsorted(sorted_src, sorted_src)


# --- CPU: scipy k-d tree -----------------------------------------------------------------------
def frnn_cpu(x: np.ndarray, r: float, k: int, *, workers: int = -1,
             max_candidates: int = DEFAULT_MAX_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges to the (at most) ``k`` nearest neighbours within ``r`` of every point.

    ``x``: (n, d) float array. Returns ``(src, dst)`` int64 arrays in the module's canonical
    order. Queries run in chunks of at most ``max_candidates // (k + 1)`` points, because the
    k-d tree answers with a dense (queries, k + 1) table whatever the number of neighbours.
    ``workers``: threads for the tree queries (-1: all cores).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"points must have shape (n, d), got {x.shape}")
    n, d = x.shape
    _check(n, d, r, k)
    empty = np.zeros(0, np.int64)
    if n < 2 or r == 0:
        return empty, empty.copy()
    if not np.all(np.isfinite(x)):
        raise ValueError("points must be finite")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    x = np.ascontiguousarray(x)
    # the tree on the principal axes: its splits follow the embedding's spread, which prunes
    # better (a large event's queries: 2.0-2.4 instead of 3.1-3.4 s on one thread); the exact
    # cut below reads x itself, so the edges do not change
    coords = principal_coordinates(torch.from_numpy(x)).numpy()
    tree = cKDTree(coords)
    slots = min(k + 1, n)  # the query itself usually takes one slot
    chunk = max(1, max_candidates // slots)
    r2 = x.dtype.type(r) ** 2  # the exact cut, in x's own precision
    srcs, dsts = [], []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # a slightly larger bound than r: the exact cut is _nearest_rows'
        _, idx = tree.query(coords[start:stop], k=slots,
                            distance_upper_bound=r * _CELL_MARGIN, workers=workers)
        table = idx.reshape(stop - start, slots).astype(np.int64, copy=False)
        src, dst = _nearest_rows(x, table, start, r2, k)
        srcs.append(src)
        dsts.append(dst)
    return np.concatenate(srcs), np.concatenate(dsts)


@numba.njit(cache=True)
def _nearest_rows(x: np.ndarray, idx: np.ndarray, start: int, r2: float, k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The canonical edges of queries ``start + i`` from the k-d tree's answer table ``idx``.

    Per query: the first ``k`` entries that are points other than the query (duplicates of a
    point may push the query itself out of the table), their squared distances summed one
    dimension at a time in x's precision, those below ``r2`` kept, sorted by (distance, index)
    with an insertion sort (linear: the tree's float64 order is nearly this order). One pass,
    no per-edge temporaries: the numpy masks, gathers and 3-key lexsort it replaces took 4.6 of
    the 5.9 s of a ``large`` event's FRNN.
    """
    n = x.shape[0]
    rows, slots = idx.shape
    src = np.empty(rows * k, np.int64)
    dst = np.empty(rows * k, np.int64)
    d2 = np.empty(rows * k, x.dtype)
    out = 0
    for i in range(rows):
        q = start + i
        first = out
        taken = 0
        for s in range(slots):
            j = idx[i, s]
            if j >= n or j == q:
                continue
            if taken == k:
                break
            taken += 1
            acc = x[q, 0] - x[q, 0]  # zero in x's dtype
            for col in range(x.shape[1]):
                diff = x[q, col] - x[j, col]
                acc += diff * diff
            if not acc < r2:
                continue
            pos = out
            while pos > first and (d2[pos - 1] > acc or (d2[pos - 1] == acc and dst[pos - 1] > j)):
                d2[pos] = d2[pos - 1]
                dst[pos] = dst[pos - 1]
                pos -= 1
            d2[pos] = acc
            dst[pos] = j
            src[out] = q
            out += 1
    return src[:out], dst[:out]


# --- torch: cell list --------------------------------------------------------------------------
def frnn_torch(x: torch.Tensor, r: float, k: int, *, grid_dims: int | None = None,
               max_candidates: int = DEFAULT_MAX_CANDIDATES, kernel: bool | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same edges as :func:`frnn_cpu`, computed with torch on ``x``'s device.

    Points are hashed into cells of side ``r`` on ``grid_dims`` dimensions (the principal
    axes with the widest spread); every point's candidates are the points of the 3**g cells
    around its own, and the full d-dimensional distance decides. ``grid_dims=None`` picks g in
    1..min(d, 6) from the exact candidate counts: more grid dimensions prune more candidates
    but cost 3x more cell look-ups each. Queries are processed in index order, in chunks of
    about ``max_candidates`` candidate pairs.

    ``kernel``: walk the cells with the numba CUDA kernel of ``taas.gnn.frnn_kernel`` instead
    of gathering candidate tensors (None: on CUDA for float32 points and ``k <= 64``; True
    also on the CPU under numba's CUDA simulator, for tests). Same edges either way.
    """
    if x.ndim != 2:
        raise ValueError(f"points must have shape (n, d), got {tuple(x.shape)}")
    n, d = x.shape
    _check(n, d, r, k)
    dev = x.device
    if n < 2 or r == 0:
        return (torch.zeros(0, dtype=torch.int64, device=dev),
                torch.zeros(0, dtype=torch.int64, device=dev))
    if not x.is_floating_point():
        x = x.double()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("points must be finite")
    grid = _Grid.build(x, r, grid_dims)
    if kernel if kernel is not None else kernel_applies(x, k):
        return frnn_kernel(x, r, k, grid.order, grid.point_cell, grid.nb_ptr, grid.nb_start,
                           grid.nb_count)
    counts = grid.candidate_counts()
    cum = torch.cumsum(counts, 0)
    total = int(cum[-1])
    # chunk boundaries: the query where the running candidate count passes each multiple
    marks = torch.arange(1, total // max_candidates + 1, device=dev) * max_candidates
    bounds = [0, *torch.searchsorted(cum, marks, right=True).tolist(), n]
    r2 = torch.tensor(r, dtype=x.dtype, device=dev) ** 2
    cols = x.T.contiguous()
    srcs, dsts = [], []
    for start, stop in itertools.pairwise(sorted(set(bounds))):
        src, dst = grid.candidates(start, stop)
        d2 = _squared_distance_torch(cols, src, dst)
        keep = (d2 < r2) & (src != dst)
        src, dst, d2 = src[keep], dst[keep], d2[keep]
        # canonical order (src, d2, dst) by stable sorts, least significant key first
        order = torch.argsort(dst, stable=True)
        order = order[torch.argsort(d2[order], stable=True)]
        order = order[torch.argsort(src[order], stable=True)]
        src, dst = src[order], dst[order]
        rank = torch.arange(len(src), device=dev) - _first_of_run(src)
        srcs.append(src[rank < k])
        dsts.append(dst[rank < k])
    log.debug("frnn_torch: n=%d d=%d grid dims=%d candidates=%d chunks=%d",
              n, d, grid.dims.numel(), total, len(srcs))
    return torch.cat(srcs), torch.cat(dsts)


def _squared_distance_torch(cols: torch.Tensor, src: torch.Tensor,
                            dst: torch.Tensor) -> torch.Tensor:
    """Squared distances of the pairs from ``cols`` = x transposed (contiguous columns)."""
    d2 = torch.zeros(len(src), dtype=cols.dtype, device=cols.device)
    for col in cols:
        diff = col.index_select(0, src) - col.index_select(0, dst)
        d2 += diff * diff
    return d2


def principal_coordinates(x: torch.Tensor) -> torch.Tensor:
    """``x`` (float64) centred and rotated onto its principal axes, the widest spread first:
    the eigenvectors of its d x d scatter matrix. Rounding moves a coordinate by ~1e-16 of
    the points' extent, far inside the cell side's ``_CELL_MARGIN``."""
    centred = x.double() - x.double().mean(0)
    _, axes = torch.linalg.eigh(centred.T @ centred)
    return centred @ axes.flip(1)


class _Grid:
    """Occupied cells of a regular grid, sorted by key, with each cell's occupied neighbours.

    ``order`` sorts the points by cell key. The occupied neighbour cells of cell ``c`` (itself
    included) are entries ``nb_ptr[c]:nb_ptr[c + 1]`` of ``nb_start``/``nb_count``, each the run
    ``order[nb_start:nb_start + nb_count]`` of that cell's points. Storing only occupied
    neighbours keeps memory low when 3**g is large and most neighbour cells are empty.
    """

    def __init__(self, dims: torch.Tensor, order: torch.Tensor, point_cell: torch.Tensor,
                 nb_ptr: torch.Tensor, nb_start: torch.Tensor, nb_count: torch.Tensor,
                 lookups: int) -> None:
        self.dims = dims
        self.order = order
        self.point_cell = point_cell
        self.nb_ptr = nb_ptr
        self.nb_start = nb_start
        self.nb_count = nb_count
        self.lookups = lookups

    @classmethod
    def build(cls, x: torch.Tensor, r: float, grid_dims: int | None) -> _Grid:
        """The grid on the ``grid_dims`` widest principal axes of ``x``, or on as many as pay
        off (None).

        The cells are laid on the principal axes (:func:`principal_coordinates`), not on x's
        own: a rotation keeps every distance, so two points closer than r stay within one cell
        of each other on every axis, while an embedding spread along a few oblique directions
        fills fewer cells. On a ``large`` event's embedding (194k points, 12 dimensions) the
        candidate pairs fall from 0.92 to 0.48 billion (best g of each). Distances are still
        computed from x itself, so the edges do not change.

        With None, g grows from 1 while the cost (candidate pairs plus 3**g look-ups per
        occupied cell) falls, and stops once the next g's look-ups alone would exceed the best
        cost so far: candidates fall with g, look-ups grow 3x per dimension.
        """
        x = principal_coordinates(x)
        d = x.shape[1]
        lo = x.min(0).values.double()
        extent = x.max(0).values.double() - lo
        by_spread = torch.argsort(extent, descending=True, stable=True)
        if grid_dims is not None:
            if not 1 <= grid_dims <= d:
                raise ValueError(f"grid_dims must be in 1..{d}, got {grid_dims}")
            return cls._with_dims(x, lo, extent, by_spread[:grid_dims], r)
        best, best_cost = None, float("inf")
        for g in range(1, min(d, MAX_GRID_DIMS) + 1):
            grid = cls._with_dims(x, lo, extent, by_spread[:g], r)
            cost = _CANDIDATE_COST * float(grid.candidate_counts().sum()) + grid.lookups
            if cost < best_cost:
                best, best_cost = grid, cost
            if 3 * grid.lookups > best_cost:
                break
        assert best is not None
        return best

    @classmethod
    def _with_dims(cls, x: torch.Tensor, lo: torch.Tensor, extent: torch.Tensor,
                   dims: torch.Tensor, r: float) -> _Grid:
        dev = x.device
        g = dims.numel()
        # cap the cells per dimension so that packed keys fit in 62 bits (sparse cells are free)
        cap = float(2 ** (60 // g) - 4)
        side = torch.clamp(extent[dims] / cap, min=r * _CELL_MARGIN)
        coord = torch.floor((x[:, dims].double() - lo[dims]) / side).long() + 1  # >= 1
        size = coord.max(0).values + 2  # room for the -1 / +1 neighbours on both sides
        stride = torch.ones(g, dtype=torch.int64, device=dev)
        for j in range(g - 2, -1, -1):
            stride[j] = stride[j + 1] * size[j + 1]
        keys = (coord * stride).sum(1)
        order = torch.argsort(keys, stable=True)
        cell_keys, inverse, count = torch.unique_consecutive(keys[order], return_inverse=True,
                                                             return_counts=True)
        start = torch.cumsum(count, 0) - count
        point_cell = torch.empty_like(inverse)
        point_cell[order] = inverse
        shifts = torch.tensor(list(itertools.product((-1, 0, 1), repeat=g)), dtype=torch.int64,
                              device=dev)
        shift_keys = (shifts * stride).sum(1)
        n_cells = len(cell_keys)
        pair_cell, pair_nb = [], []
        step = max(1, DEFAULT_MAX_CANDIDATES // len(shift_keys))
        for c0 in range(0, n_cells, step):  # bounded memory: cells x 3**g keys at a time
            wanted = cell_keys[c0:c0 + step, None] + shift_keys[None, :]
            pos = torch.searchsorted(cell_keys, wanted).clamp_(max=n_cells - 1)
            row, col = torch.nonzero(cell_keys[pos] == wanted, as_tuple=True)
            pair_cell.append(row + c0)
            pair_nb.append(pos[row, col])
        cells, nbs = torch.cat(pair_cell), torch.cat(pair_nb)
        nb_ptr = torch.zeros(n_cells + 1, dtype=torch.int64, device=dev)
        nb_ptr[1:] = torch.cumsum(torch.bincount(cells, minlength=n_cells), 0)
        return cls(dims, order, point_cell, nb_ptr, start[nbs], count[nbs],
                   lookups=n_cells * len(shift_keys))

    def candidate_counts(self) -> torch.Tensor:
        """Candidate neighbours of each point (points in its 3**g cells, itself included)."""
        n_cells = len(self.nb_ptr) - 1
        per_cell = torch.zeros(n_cells, dtype=torch.int64, device=self.order.device)
        cells = torch.repeat_interleave(torch.arange(n_cells, device=self.order.device),
                                        torch.diff(self.nb_ptr))
        per_cell.index_add_(0, cells, self.nb_count)
        return per_cell[self.point_cell]

    def candidates(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All (query, candidate) pairs for queries ``start..stop-1``, queries ascending."""
        dev = self.order.device
        cells = self.point_cell[start:stop]
        first, n_runs = self.nb_ptr[cells], self.nb_ptr[cells + 1] - self.nb_ptr[cells]
        query_of_run = torch.repeat_interleave(torch.arange(len(cells), device=dev), n_runs)
        runs = first[query_of_run] + _within_segments(n_runs, len(query_of_run))
        run_count = self.nb_count[runs]
        total = int(run_count.sum())
        run = torch.repeat_interleave(torch.arange(len(runs), device=dev), run_count,
                                      output_size=total)
        dst = self.order[self.nb_start[runs][run] + _within_segments(run_count, total)]
        src = query_of_run[run] + start
        return src, dst


def _within_segments(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """0, 1, ..., len-1 for each segment, concatenated (``total`` = lengths.sum())."""
    seg_start = torch.cumsum(lengths, 0) - lengths
    seg = torch.repeat_interleave(seg_start, lengths, output_size=total)
    return torch.arange(total, device=lengths.device) - seg


def frnn(x: np.ndarray | torch.Tensor, r: float, k: int
         ) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
    """``frnn_torch`` for a tensor (on its device), ``frnn_cpu`` for anything else."""
    if isinstance(x, torch.Tensor):
        return frnn_torch(x, r, k)
    return frnn_cpu(x, r, k)
