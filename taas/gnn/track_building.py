"""Track building: scored graph edges -> proto-tracks (ACORN's last step).

Two methods, as in ACORN:

* ``"cc"``: keep the edges scoring above ``score_cut`` and take each connected component with at
  least ``min_hits`` nodes as a track.
* ``"walkthrough"`` (ACORN's "CC and walk"): orient the kept edges outwards (from the smaller
  to the larger ordering key, r by default). Components that are simple chains (every node
  with in- and out-degree <= 1) become tracks directly. Branched components are walked: each
  unused node, innermost first, starts a road that follows the best-scoring edge to an unused
  node (above ``walk_min``) and also tries the other edges above ``walk_add``; the longest road
  wins (ties: the better-scoring branch), and becomes a track when it has ``min_hits`` nodes.
  Its nodes are then used; a start whose road is too short is dropped. Because the oriented
  graph is acyclic, the longest road is found by dynamic programming over the nodes reachable
  from the start, not by listing every road as ACORN does.

All array work happens in torch on one device (CUDA for the GPU stage, the CPU device for the
CPU stage), so both stages run the same code; they differ in the connected-components kernel
(scipy vs. label propagation in torch) and the device. The walk of branched components is a
sequential numba loop on the host: a GPU stage that walks says so in its ``device``.

Output order is deterministic and the same on every device: nodes within a track by (key, node
index), tracks by their first node. Connected-component labels are canonical (the smallest node
index of the component) so both kernels give identical arrays, not just the same partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import torch

from taas.detector.detector import Detector
from taas.edm import Edges, ProtoTracks, Spacepoints
from taas.errors import InputError, TaasError
from taas.stages.base import RowOrder, Stage
from taas.stages.device_tensors import (
    DeviceOutputs,
    DeviceTensors,
    TransferCounter,
    compute_via_device,
)

log = logging.getLogger(__name__)

#: (n_nodes, src, dst) -> canonical component label of each node (smallest node index).
ComponentsFn = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrackBuildingConfig:
    """Cuts of both methods.

    ``score_cut``: edges scoring above it form the graph (both methods). ``walk_min``: a walk
    follows an edge only above this; ``walk_add``: other edges than the best are tried above
    this (branching). ``order_by``: the key that orients edges and orders nodes in a track,
    ``"r"`` (transverse radius) or ``"distance"`` (from the origin, better in the end caps).
    ``allow_cpu_fallback``: GPU backend only, run on the CPU device when CUDA is absent.
    """

    method: Literal["cc", "walkthrough"] = "cc"
    score_cut: float = 0.5
    walk_min: float = 0.5
    walk_add: float = 0.8
    min_hits: int = 3
    order_by: Literal["r", "distance"] = "r"
    allow_cpu_fallback: bool = True

    def __post_init__(self) -> None:
        if self.method not in ("cc", "walkthrough"):
            raise ValueError(f"method must be 'cc' or 'walkthrough', got {self.method!r}")
        if self.order_by not in ("r", "distance"):
            raise ValueError(f"order_by must be 'r' or 'distance', got {self.order_by!r}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.walk_add < self.walk_min:
            raise ValueError(f"walk_add ({self.walk_add}) must be >= walk_min ({self.walk_min})")


# --- connected components ----------------------------------------------------------------------
def components_scipy(n_nodes: int, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Canonical component labels with scipy's ``connected_components`` (host arrays)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    s, d = src.cpu().numpy(), dst.cpu().numpy()
    graph = coo_matrix((np.ones(len(s), np.int8), (s, d)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)  # first occurrence = smallest node
    return torch.from_numpy(first[labels].astype(np.int64)).to(src.device)


def components_torch(n_nodes: int, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Canonical component labels by hooking and pointer jumping, vectorised in torch.

    ``parent`` is a forest with ``parent[i] <= i``. Each round hooks, for every edge whose
    ends are in different trees, the larger root onto the smaller (``scatter_reduce`` "amin"
    resolves conflicting hooks), then compresses every path to its root. A component ends as
    one tree whose root is its smallest node; rounds grow like log(n) on real graphs.
    """
    parent = torch.arange(n_nodes, device=src.device)
    if len(src) == 0:
        return parent
    while True:
        ps, pd = parent[src], parent[dst]
        differ = ps != pd
        if not bool(differ.any()):
            return parent
        ps, pd = ps[differ], pd[differ]
        parent.scatter_reduce_(0, torch.maximum(ps, pd), torch.minimum(ps, pd), "amin")
        while True:  # pointer jumping to full compression
            grand = parent[parent]
            if torch.equal(grand, parent):
                break
            parent = grand


# --- shared graph steps ------------------------------------------------------------------------
def node_rank(key: torch.Tensor) -> torch.Tensor:
    """Position of each node when sorted by (key, node index): a strict total order."""
    order = torch.argsort(key, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=key.device)
    return rank


def tracks_from_labels(labels: torch.Tensor, rank: torch.Tensor,
                       min_hits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (offsets, nodes) of the groups of nodes sharing a label (-1: in no track).

    Groups smaller than ``min_hits`` are dropped; nodes are ordered by rank within a track and
    tracks by the rank of their first node.
    """
    dev, n = labels.device, len(labels)
    nodes = torch.nonzero(labels >= 0).reshape(-1)
    lab = labels[nodes]
    size = torch.bincount(lab, minlength=n)
    first = torch.full((n,), n, dtype=torch.int64, device=dev)
    first.scatter_reduce_(0, lab, rank[nodes], "amin")
    keep = size[lab] >= min_hits
    nodes, lab = nodes[keep], lab[keep]
    track_key = first[lab]
    order = torch.argsort(track_key * n + rank[nodes])  # unique keys: no ties
    nodes = nodes[order]
    _, lengths = torch.unique_consecutive(track_key[order], return_counts=True)
    zero = torch.zeros(1, dtype=torch.int64, device=dev)
    return torch.cat([zero, torch.cumsum(lengths, 0)]), nodes


def _orient_unique(src: torch.Tensor, dst: torch.Tensor, score: torch.Tensor, rank: torch.Tensor,
                   n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges from lower to higher rank, self loops dropped, duplicates merged (best score)."""
    flip = rank[src] > rank[dst]
    a, b = torch.where(flip, dst, src), torch.where(flip, src, dst)
    loop = a == b
    a, b, score = a[~loop], b[~loop], score[~loop]
    pair, inverse = torch.unique(a * n + b, return_inverse=True)
    best = torch.full((len(pair),), -torch.inf, dtype=score.dtype, device=score.device)
    best.scatter_reduce_(0, inverse, score, "amax")
    return pair // n, pair % n, best


def build_tracks(n_nodes: int, src: torch.Tensor, dst: torch.Tensor, score: torch.Tensor,
                 key: torch.Tensor, config: TrackBuildingConfig,
                 components: ComponentsFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Proto-tracks as CSR ``(offsets, node indices)`` on the inputs' device.

    ``src``/``dst``/``score``: edges (any direction); ``key``: the per-node ordering key (r);
    ``components``: the connected-components kernel (:func:`components_scipy` or
    :func:`components_torch`).
    """
    dev = key.device
    if len(src) and (int(torch.minimum(src, dst).min()) < 0
                     or int(torch.maximum(src, dst).max()) >= n_nodes):
        raise InputError(f"track_building: edge endpoints must lie in [0, {n_nodes})")
    rank = node_rank(key)
    cut = score > config.score_cut
    src, dst, score = src[cut], dst[cut], score[cut]
    if config.method == "cc":
        return tracks_from_labels(components(n_nodes, src, dst), rank, config.min_hits)
    src, dst, score = _orient_unique(src, dst, score, rank, n_nodes)
    labels = components(n_nodes, src, dst)
    branched_node = ((torch.bincount(src, minlength=n_nodes) > 1)
                     | (torch.bincount(dst, minlength=n_nodes) > 1)).long()
    branched = torch.zeros(n_nodes, dtype=torch.int64, device=dev)
    branched.scatter_reduce_(0, labels, branched_node, "amax")
    branched = branched[labels].bool()
    labels = torch.where(branched, -1, labels)
    if bool(branched.any()):
        walked = _walk_branched(n_nodes, src, dst, score, rank, branched, config)
        labels = torch.where(branched, walked, labels)
    return tracks_from_labels(labels, rank, config.min_hits)


def _walk_branched(n_nodes: int, src: torch.Tensor, dst: torch.Tensor, score: torch.Tensor,
                   rank: torch.Tensor, branched: torch.Tensor,
                   config: TrackBuildingConfig) -> torch.Tensor:
    """Track label (start node, or -1) of every node, from walks over the branched nodes."""
    usable = branched[src] & branched[dst] & (score > config.walk_min)
    src, dst, score = src[usable], dst[usable], score[usable]
    # out-edges per node, best score first, ties by the destination's rank
    order = torch.argsort(rank[dst], stable=True)
    order = order[torch.argsort(-score[order], stable=True)]
    order = order[torch.argsort(src[order], stable=True)]
    zero = torch.zeros(1, dtype=torch.int64, device=src.device)
    ptr = torch.cat([zero, torch.cumsum(torch.bincount(src, minlength=n_nodes), 0)])
    starts = torch.nonzero(branched).reshape(-1)
    starts = starts[torch.argsort(rank[starts])]
    moved = TransferCounter()  # a round trip to the host on CUDA: counted in the ledger
    labels = walk(*(moved.to_host_array(t) for t in (starts, ptr, dst[order],
                                               score[order].double(), rank, branched)),
                  config.walk_add, config.min_hits)
    return moved.to_device_tensor(labels, src.device)


@numba.njit(cache=True)
def _allowed(u: int, ptr: np.ndarray, nbr: np.ndarray, score: np.ndarray, free: np.ndarray,
             walk_add: float, out: np.ndarray) -> int:
    """Write into ``out`` the successors a walk may take from ``u``; return how many.

    The best-scoring free successor always (edges here already pass ``walk_min``), the other
    free ones scoring above ``walk_add``, best first.
    """
    m = 0
    for e in range(ptr[u], ptr[u + 1]):
        v = nbr[e]
        if free[v] and (m == 0 or score[e] > walk_add):
            out[m] = v
            m += 1
    return m


@numba.njit(cache=True)
def walk(starts: np.ndarray, ptr: np.ndarray, nbr: np.ndarray, score: np.ndarray,
         rank: np.ndarray, free: np.ndarray, walk_add: float, min_hits: int) -> np.ndarray:
    """Longest-road walks from ``starts`` (in topological order) over an acyclic graph.

    ``ptr``/``nbr``/``score``: out-edges in CSR, best score first. ``free``: nodes a road may
    use (consumed as roads are accepted; a copy is taken). Returns each node's track label
    (its road's start node) or -1.
    """
    n = len(rank)
    free = free.copy()
    labels = np.full(n, -1, np.int64)
    stamp = np.full(n, -1, np.int64)
    length = np.zeros(n, np.int64)
    nxt = np.full(n, -1, np.int64)
    stack = np.empty(n, np.int64)
    reach = np.empty(n, np.int64)
    succ = np.empty(max(len(nbr), 1), np.int64)
    for it in range(len(starts)):
        s = starts[it]
        if not free[s]:
            continue
        # nodes reachable from s along allowed edges
        n_reach, top = 0, 0
        stack[0] = s
        top = 1
        stamp[s] = it
        while top:
            top -= 1
            u = stack[top]
            reach[n_reach] = u
            n_reach += 1
            m = _allowed(u, ptr, nbr, score, free, walk_add, succ)
            for j in range(m):
                v = succ[j]
                if stamp[v] != it:
                    stamp[v] = it
                    stack[top] = v
                    top += 1
        # longest road from each reachable node, outermost first (edges go up in rank)
        sub = reach[:n_reach]
        sub = sub[np.argsort(rank[sub])]
        for i in range(n_reach - 1, -1, -1):
            u = sub[i]
            length[u], nxt[u] = 1, -1
            m = _allowed(u, ptr, nbr, score, free, walk_add, succ)
            for j in range(m):  # best score first: a strictly longer road must beat it
                v = succ[j]
                if length[v] + 1 > length[u]:
                    length[u], nxt[u] = length[v] + 1, v
        if length[s] >= min_hits:
            u = s
            while u >= 0:
                labels[u] = s
                free[u] = False
                u = nxt[u]
        else:
            free[s] = False
    return labels


# --- the stage ---------------------------------------------------------------------------------
def prototracks_from_nodes(offsets: np.ndarray, nodes: np.ndarray,
                           spacepoints: Spacepoints) -> ProtoTracks:
    """Proto-tracks over measurement indices from tracks over space-point rows."""
    return ProtoTracks(offsets=offsets, indices=spacepoints["measurement_index"][nodes])


class TrackBuildingStage(Stage):
    """Edges + space points -> proto-tracks (measurement indices); backends set the hooks.

    A backend sets ``BACKEND`` and may override ``components`` (the connected-components
    kernel) and ``select_device``; the array work is otherwise the same code on every backend.
    """

    NAME = "track_building"
    INPUTS = Edges.tensor_specs() + Spacepoints.tensor_specs()
    OUTPUTS = ProtoTracks.tensor_specs()
    ROW_ORDER = RowOrder(("spacepoints",), index_inputs=("edges.src", "edges.dst"))
    #: The connected-components kernel (the device hook; scipy on the host by default).
    components = staticmethod(components_scipy)

    def __init__(self, detector: Detector | None,
                 config: TrackBuildingConfig | None = None) -> None:
        super().__init__(detector)  # type: ignore[arg-type]  # track building needs none
        self.config = config or TrackBuildingConfig()
        self.torch_device, self._device_note = self.select_device()

    def select_device(self) -> tuple[torch.device, str]:
        """The torch device for the array work and its description (the device hook)."""
        return torch.device("cpu"), ""

    @property
    def device(self) -> str:
        walk = " (+ numba walk on cpu)" if self.config.method == "walkthrough" else ""
        if self.torch_device.type == "cpu":
            return f"cpu{self._device_note}"
        return f"{self.torch_device}{self._device_note}{walk}"

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return compute_via_device(self, inputs)

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        """Edges from the device (left there by the GNN stages under ``Pipeline``'s
        residency), space points from the host; proto-tracks to the host."""
        sps = Spacepoints.from_tensors({s.name: tensors.host(s.name)
                                        for s in Spacepoints.tensor_specs()})
        key = sps["r"] if self.config.order_by == "r" else np.hypot(sps["r"], sps["z"])
        src, dst, score = (tensors.get(f"edges.{c}") for c in ("src", "dst", "score"))
        moved = tensors.counter
        offsets, nodes = build_tracks(len(sps), src, dst, score,
                                      moved.to_device_tensor(key, self.torch_device),
                                      self.config, type(self).components)
        out = prototracks_from_nodes(moved.to_host_array(offsets), moved.to_host_array(nodes),
                                     sps)
        log.debug("%s: %d edges, %d space points -> %d proto-tracks", self.qualified_name,
                  len(src), len(sps), len(out))
        return out.to_tensors()


class CudaUnavailableError(TaasError, RuntimeError):
    """A GPU stage was asked not to fall back to the CPU device, and there is no CUDA."""


def cuda_or_fallback(allow_cpu_fallback: bool) -> tuple[torch.device, str]:
    """CUDA when present, else the CPU device (when allowed) with a note saying so."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device()), ""
    if not allow_cpu_fallback:
        raise CudaUnavailableError("CUDA is unavailable and allow_cpu_fallback is False")
    return torch.device("cpu"), " (CUDA unavailable)"
