"""Module-map graph construction (GNN4ITk): edges only between module pairs seen in training.

The alternative to metric learning that the ATLAS ITk GNN pipeline uses (Biscarat et al.,
"Towards a realistic track reconstruction algorithm based on graph neural networks for the
HL-LHC", EPJ Web Conf. 251 (2021) 03047; Caillou et al., ATL-PHYS-PROC-2022-053): from
simulated events, record every pair of modules that two consecutive hits of one particle sit on
(the truth edges of ``taas.metrics.graph``) together with the range of a few doublet quantities
over the training doublets of that pair. At inference, every hit on module A is paired with
every hit on module B for each (A, B) in the map, and a pair becomes an edge when all its
quantities lie in the pair's recorded range (widened by ``margin``). No learning, no
per-event neighbour search: the map is a lookup table, and the per-pair cuts carry what the
geometry of each module pair allows.

Quantities of a doublet a -> b (a nearer the production vertex), in mm and rad:

* ``z0``: z where the straight line through a and b in (r, z) crosses r = 0;
* ``dphi``: phi_b - phi_a, wrapped to [-pi, pi);
* ``phi_slope``: dphi / (r_b - r_a);
* ``deta``: eta_b - eta_a (eta of each hit seen from the origin).

Doublets at (almost) equal radius (endcap disk overlaps) have no meaningful z0 or phi slope:
those two are clipped to +-``CLIP`` so that the ranges stay finite and such doublets are cut on
dphi and deta only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from taas.errors import InputError
from taas.gnn.data import orient_edges, unique_pairs

#: Doublet quantities bounded per module pair, in the order of ``lo`` / ``hi``'s columns.
QUANTITIES: tuple[str, ...] = ("z0", "dphi", "phi_slope", "deta")
N_QUANTITIES = len(QUANTITIES)

#: Bound on |z0| (mm) and |phi_slope| (rad/mm) for doublets at (almost) equal radius.
CLIP = 1.0e4
#: |r_b - r_a| (mm) below which z0 and phi_slope take +-CLIP.
MIN_DR = 1.0e-3


@numba.njit(cache=True)
def _cylindrical(xyz: np.ndarray) -> np.ndarray:
    """``(n, 4)``: r, phi, z and eta (seen from the origin) of each hit, computed once so that
    the pair loop needs no transcendental function."""
    out = np.empty((len(xyz), 4))
    for i in range(len(xyz)):
        r = np.sqrt(xyz[i, 0] * xyz[i, 0] + xyz[i, 1] * xyz[i, 1])
        out[i, 0] = r
        out[i, 1] = np.arctan2(xyz[i, 1], xyz[i, 0])
        out[i, 2] = xyz[i, 2]
        out[i, 3] = np.arcsinh(xyz[i, 2] / max(r, 1e-9))
    return out


@numba.njit(cache=True)
def _quantities(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """The ``QUANTITIES`` of the doublet a -> b (rows of ``_cylindrical``), into ``out``."""
    dr = b[0] - a[0]
    dphi = b[1] - a[1]
    if dphi >= np.pi:
        dphi -= 2.0 * np.pi
    elif dphi < -np.pi:
        dphi += 2.0 * np.pi
    if abs(dr) < MIN_DR:
        sign = 1.0 if dr >= 0.0 else -1.0
        z0 = CLIP * sign
        slope = CLIP * sign
    else:
        z0 = min(max(a[2] - a[0] * (b[2] - a[2]) / dr, -CLIP), CLIP)
        slope = min(max(dphi / dr, -CLIP), CLIP)
    out[0] = z0
    out[1] = dphi
    out[2] = slope
    out[3] = b[3] - a[3]


@numba.njit(cache=True)
def doublet_quantities(xyz: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), N_QUANTITIES)`` quantities of the doublets ``a[i] -> b[i]``."""
    cyl = _cylindrical(xyz)
    out = np.empty((len(a), N_QUANTITIES))
    for i in range(len(a)):
        _quantities(cyl[a[i]], cyl[b[i]], out[i])
    return out


@dataclass(frozen=True)
class ModuleMap:
    """Module pairs ``(module_a[i], module_b[i])``, sorted, with the range ``[lo[i], hi[i]]``
    of each of ``QUANTITIES`` over the ``n_doublets[i]`` training doublets a -> b."""

    module_a: np.ndarray
    module_b: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_doublets: np.ndarray
    n_events: int

    def __post_init__(self) -> None:
        p = len(self.module_a)
        if (len(self.module_b) != p or self.lo.shape != (p, N_QUANTITIES)
                or self.hi.shape != (p, N_QUANTITIES) or len(self.n_doublets) != p):
            raise InputError("ModuleMap: module pairs, ranges and counts disagree in length")

    def __len__(self) -> int:
        return len(self.module_a)

    def widened(self, margin: float) -> ModuleMap:
        """The map with every range widened by ``margin`` times its width on each side (the
        training doublets of a pair are a sample: its tails lie beyond their extremes)."""
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        pad = margin * (self.hi - self.lo)
        return ModuleMap(self.module_a, self.module_b, self.lo - pad, self.hi + pad,
                         self.n_doublets, self.n_events)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, module_a=self.module_a, module_b=self.module_b, lo=self.lo,
                                hi=self.hi, n_doublets=self.n_doublets,
                                n_events=np.int64(self.n_events),
                                quantities=np.array(QUANTITIES))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModuleMap:
        with np.load(Path(path)) as z:
            if tuple(z["quantities"]) != QUANTITIES:
                raise InputError(f"{path}: module map of quantities {tuple(z['quantities'])}, "
                                 f"this taas uses {QUANTITIES}")
            return cls(z["module_a"], z["module_b"], z["lo"], z["hi"], z["n_doublets"],
                       int(z["n_events"]))


def build_module_map(doublets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
                     ) -> ModuleMap:
    """The map of training doublets, given per event as ``(xyz, module, a, b)``: hit
    positions ``(n, 3)``, module key per hit, and the doublets ``a[i] -> b[i]`` (truth edges,
    ``a`` nearer the vertex). Doublets within one module are ignored (truth never joins
    them)."""
    keys_a, keys_b, values = [], [], []
    for xyz, module_key, src, dst in doublets:
        mod = np.asarray(module_key, np.uint64)
        cross = mod[src] != mod[dst]
        a = np.asarray(src, np.int64)[cross]
        b = np.asarray(dst, np.int64)[cross]
        keys_a.append(mod[a])
        keys_b.append(mod[b])
        values.append(doublet_quantities(np.ascontiguousarray(xyz, np.float64), a, b))
    if not values or sum(len(v) for v in values) == 0:
        empty = np.zeros(0, np.uint64)
        ranges = np.zeros((0, N_QUANTITIES))
        return ModuleMap(empty, empty.copy(), ranges, ranges.copy(), np.zeros(0, np.int64),
                         len(doublets))
    ka, kb, v = np.concatenate(keys_a), np.concatenate(keys_b), np.concatenate(values)
    order = np.lexsort((kb, ka))
    ka, kb, v = ka[order], kb[order], v[order]
    first = np.flatnonzero(np.r_[True, (ka[1:] != ka[:-1]) | (kb[1:] != kb[:-1])])
    return ModuleMap(ka[first], kb[first], np.minimum.reduceat(v, first, axis=0),
                     np.maximum.reduceat(v, first, axis=0),
                     np.diff(np.r_[first, len(ka)]).astype(np.int64), len(doublets))


@numba.njit(cache=True)
def _pair_edges(cyl: np.ndarray, order: np.ndarray, start_a: np.ndarray, end_a: np.ndarray,
                start_b: np.ndarray, end_b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                fill: bool, out_src: np.ndarray, out_dst: np.ndarray) -> int:
    """Edges of the map pairs: hits ``order[start_a[p]:end_a[p]]`` x ``order[start_b[p]:
    end_b[p]]`` whose quantities lie in ``[lo[p], hi[p]]``. Counts them, and writes them
    into ``out_*`` when ``fill``."""
    q = np.empty(N_QUANTITIES)
    n = 0
    for p in range(len(start_a)):
        for i in range(start_a[p], end_a[p]):
            u = order[i]
            for j in range(start_b[p], end_b[p]):
                v = order[j]
                _quantities(cyl[u], cyl[v], q)
                ok = True
                for k in range(N_QUANTITIES):
                    if q[k] < lo[p, k] or q[k] > hi[p, k]:
                        ok = False
                        break
                if ok:
                    if fill:
                        out_src[n] = u
                        out_dst[n] = v
                    n += 1
    return n


def module_map_graph(module_map: ModuleMap, xyz: np.ndarray, module: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges ``src -> dst`` (src on the map pair's first module) of one event's hits
    (positions ``(n, 3)`` in mm, module key per hit) that pass the map's cuts."""
    xyz = np.ascontiguousarray(xyz, np.float64)
    module = np.asarray(module, np.uint64)
    if xyz.shape != (len(module), 3):
        raise InputError(f"module_map_graph: xyz {xyz.shape} does not match {len(module)} "
                         "module keys")
    empty = np.zeros(0, np.int64)
    if len(module) < 2 or len(module_map) == 0:
        return empty, empty.copy()
    order = np.argsort(module, kind="stable")
    present, first = np.unique(module[order], return_index=True)
    last = np.r_[first[1:], len(module)]
    ia = np.searchsorted(present, module_map.module_a)
    ib = np.searchsorted(present, module_map.module_b)
    ia_c, ib_c = np.minimum(ia, len(present) - 1), np.minimum(ib, len(present) - 1)
    use = (present[ia_c] == module_map.module_a) & (present[ib_c] == module_map.module_b)
    ia, ib = ia_c[use], ib_c[use]
    args = (_cylindrical(xyz), order, first[ia], last[ia], first[ib], last[ib],
            np.ascontiguousarray(module_map.lo[use]), np.ascontiguousarray(module_map.hi[use]))
    n = _pair_edges(*args, False, empty, empty)
    src = np.empty(n, np.int64)
    dst = np.empty(n, np.int64)
    _pair_edges(*args, True, src, dst)
    return src, dst


def module_map_edges(module_map: ModuleMap, xyz: np.ndarray, module: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The undirected graph of :func:`module_map_graph`: each pair once (a map holding both
    (A, B) and (B, A) would give it twice), oriented by ``orient_edges`` as the learned radius
    graph is (``taas.gnn.data.radius_graph``)."""
    xyz = np.ascontiguousarray(xyz, np.float64)
    src, dst = unique_pairs(*module_map_graph(module_map, xyz, module), len(xyz))
    return orient_edges(src, dst, xyz)
