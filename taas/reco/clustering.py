"""Clustering: sparse connected-component labelling of fired cells, module by module.

The reference algorithm, run by ``ClusteringStage`` (``taas.reco.stages``) on the CPU; other
backends replace only the labelling and reduction (``ClusteringStage.measure``).

Each cell gets one integer key packing (module row, ch0, ch1), so sorting the keys sorts the cells
by module, then column, then row. One sweep over the sorted cells then finds every neighbour of a
cell among the cells before it: its predecessor in the same column, and at most three cells of
the previous column, reached by a pointer that only moves forward. Labelling is therefore O(n)
after the sort, whatever the occupancy. Neighbours are joined with a union-find whose root is
always the cluster's first cell in sorted order, which makes the measurement order deterministic:
by module key, then by first cell. Same idea as traccc's sparse CCL, written for numba.

Pixels and strips alike have a 2D channel grid (a strip is one long cell along v), so each
cluster becomes one 2D measurement, as in TrackML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from taas.detector.detector import Detector
from taas.edm import Measurements

#: Bits per channel index in a cell key (module row in the top bits). Channel numbers must stay
#: below 2**CHANNEL_BITS - 1 so that key arithmetic never wraps into a neighbouring column.
CHANNEL_BITS = 21
_COLUMN = 1 << CHANNEL_BITS  # key step from one ch0 to the next
_CHANNEL_MASK = _COLUMN - 1


def unpack_cell_keys(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(module row, ch0, ch1) of packed cell keys (the inverse of ``pack_cell_keys``)."""
    return (key >> (2 * CHANNEL_BITS), (key >> CHANNEL_BITS) & _CHANNEL_MASK,
            key & _CHANNEL_MASK)


def pack_cell_keys(rows: np.ndarray, ch0: np.ndarray, ch1: np.ndarray) -> np.ndarray:
    """One int64 key per cell packing (module row, ch0, ch1): sorting keys sorts the cells by
    module, then column, then row; channels must lie in ``[0, 2**CHANNEL_BITS - 1)``."""
    return ((rows.astype(np.int64) << (2 * CHANNEL_BITS))
            | (ch0.astype(np.int64) << CHANNEL_BITS) | ch1.astype(np.int64))


@dataclass(frozen=True)
class ClusteringConfig:
    """How cells are grouped and how their positions are averaged.

    ``connectivity``: 8 joins cells that share an edge or a corner (ACTS' and traccc's default),
    4 only those that share an edge. ``charge_weighted``: centroid and spread weighted by cell
    value, as ACTS and traccc do; False takes the plain mean of the cell centres.
    """

    connectivity: int = 8
    charge_weighted: bool = True

    def __post_init__(self) -> None:
        if type(self.connectivity) is not int or self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity!r}")
        if not isinstance(self.charge_weighted, bool):
            raise ValueError(f"charge_weighted must be a bool, got {self.charge_weighted!r}")


@njit(cache=True)
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True)
def _union(parent: np.ndarray, a: int, b: int) -> None:
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:  # the smaller index stays root: a root is its cluster's first cell
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@njit(cache=True)
def label_sorted_cells(key: np.ndarray, eight: bool) -> tuple[np.ndarray, int]:
    """Cluster label of each cell, given non-decreasing cell keys; labels by first cell.

    Duplicate cells (equal keys) land in the same cluster.
    """
    n = key.shape[0]
    parent = np.arange(n)
    reach = 1 if eight else 0  # how far along ch1 a previous-column neighbour may sit
    p = 0  # first cell at or after the current cell's previous-column window
    for i in range(n):
        k = key[i]
        # same column: only the predecessor can touch (or duplicate) this cell
        if i > 0 and key[i - 1] >= k - 1:
            _union(parent, i - 1, i)
        # previous column: the window start never decreases with i, so p only moves forward
        lo = k - _COLUMN - reach
        while p < i and key[p] < lo:
            p += 1
        q = p
        while q < i and key[q] <= lo + 2 * reach:
            _union(parent, q, i)
            q += 1
    label = np.empty(n, np.int64)
    n_labels = 0
    for i in range(n):
        root = _find(parent, i)
        if root == i:
            label[i] = n_labels
            n_labels += 1
        else:
            label[i] = label[root]  # root < i, already labelled
    return label, n_labels


@njit(cache=True)
def cluster_extents(label: np.ndarray, n_labels: int, ch0: np.ndarray,
                    ch1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First cell (in sorted order) and extent in cells along ch0 and ch1 of every cluster."""
    first = np.full(n_labels, -1, np.int64)
    lo0 = np.zeros(n_labels, np.int64)
    hi0 = np.zeros(n_labels, np.int64)
    lo1 = np.zeros(n_labels, np.int64)
    hi1 = np.zeros(n_labels, np.int64)
    for i in range(label.shape[0]):
        k = label[i]
        if first[k] < 0:
            first[k] = i
            lo0[k] = hi0[k] = ch0[i]
            lo1[k] = hi1[k] = ch1[i]
        else:
            lo0[k] = min(lo0[k], ch0[i])
            hi0[k] = max(hi0[k], ch0[i])
            lo1[k] = min(lo1[k], ch1[i])
            hi1[k] = max(hi1[k], ch1[i])
    return first, (hi0 - lo0 + 1).astype(np.int32), (hi1 - lo1 + 1).astype(np.int32)


def weighted_moments(label: np.ndarray, n_labels: int, x: np.ndarray,
                     w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and (biased) variance of ``x`` per label; weights must sum > 0 per label."""
    wsum = np.bincount(label, w, minlength=n_labels)
    mean = np.bincount(label, w * x, minlength=n_labels) / wsum
    dev = x - mean[label]  # second pass about the mean: no cancellation
    return mean, np.bincount(label, w * dev * dev, minlength=n_labels) / wsum


def measure_sorted_cells(detector: Detector, key: np.ndarray, value: np.ndarray,
                         config: ClusteringConfig) -> tuple[np.ndarray, Measurements]:
    """Cluster label of each cell and the measurements, for cells sorted by packed key.

    Measurement ``k`` is cluster ``k``, numbered by first cell in sorted order. Position:
    weighted mean of cell centres; variance: weighted spread of the cell centres plus the
    pitch^2/12 of a single cell, per axis. Weights are cell values clipped at zero; a cluster
    without positive value falls back to equal weights, so every position is finite.
    """
    label, n_labels = label_sorted_cells(key, config.connectivity == 8)
    _, s0, s1 = unpack_cell_keys(key)
    first, size_u, size_v = cluster_extents(label, n_labels, s0, s1)
    value = value.astype(np.float64)
    w = np.maximum(value, 0.0) if config.charge_weighted else np.ones(len(key))
    no_weight = np.bincount(label, w, minlength=n_labels) <= 0.0
    if np.any(no_weight):
        w = np.where(no_weight[label], 1.0, w)
    mean0, var0 = weighted_moments(label, n_labels, s0, w)
    mean1, var1 = weighted_moments(label, n_labels, s1, w)
    m_rows = key[first] >> (2 * CHANNEL_BITS)
    # cell centres are affine in the channel index: the weighted mean of the centres is the
    # centre of the mean channel, and the spread scales with the pitch squared
    local_u, local_v = detector.channel_to_local(m_rows, mean0, mean1)
    pitch_u = detector.modules["pitch_u"][m_rows]
    pitch_v = detector.modules["pitch_v"][m_rows]
    return label, Measurements(
        module_key=detector.modules["module_key"][m_rows],
        local_u=local_u, local_v=local_v,
        var_u=(var0 + 1.0 / 12.0) * pitch_u**2, var_v=(var1 + 1.0 / 12.0) * pitch_v**2,
        size_u=size_u, size_v=size_v,
        n_cells=np.bincount(label, minlength=n_labels).astype(np.int32),
        charge=np.bincount(label, value, minlength=n_labels),
    )
