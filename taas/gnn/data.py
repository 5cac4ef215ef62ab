"""Training samples for the GNN pipeline: one graph-ready record per simulated event.

A sample is what every training stage needs and nothing more: node features, the truth particle
of each space point and the truth edges (``taas.metrics.graph.truth_edges``, the one truth
definition every metric in taas uses), plus the particle table needed to recompute them. It is
built with the same CPU front end the pipelines run (clustering -> space points on
``event.cells``; for an event without cells, its hits' space points), so the models see
exactly the inputs they will meet in reconstruction, and it is cached as one ``.npz`` per
event: the front end then runs once per event, not once per epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numba
import numpy as np
from tqdm import tqdm

from taas.edm import Clusters, Measurements, Spacepoints
from taas.events.dataset import open_dataset
from taas.events.event import Event, event_stem
from taas.gnn.features import FEATURE_VERSION, node_features
from taas.io.atomic import atomic_write
from taas.metrics.graph import edge_truth, truth_edges
from taas.metrics.truth_link import measurement_particles
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.hit_spacepoints import has_cells, spacepoint_inputs, truth_cell_hit_ids
from taas.stages.registry import resolve

log = logging.getLogger(__name__)


@dataclass
class GraphSample:
    """One event's GNN inputs and truth (numpy arrays; ``n`` space points, ``p`` particles)."""

    event_id: int
    x: np.ndarray                # (n, F) float32 node features (taas.gnn.features)
    xyz: np.ndarray              # (n, 3) float64 global positions (mm)
    module: np.ndarray           # (n,) uint64 module key
    particle: np.ndarray         # (n,) uint64 truth particle, 0 = noise
    truth_src: np.ndarray        # (t,) int64 truth edges, src nearer the production vertex
    truth_dst: np.ndarray        # (t,) int64
    truth_particle: np.ndarray   # (t,) uint64 particle of each truth edge
    particle_ids: np.ndarray     # (p,) uint64
    particle_vertex: np.ndarray  # (p, 3) float64 production vertex (mm)
    particle_pt: np.ndarray      # (p,) float64 GeV

    @property
    def n_nodes(self) -> int:
        return len(self.x)

    def truth_pt(self) -> np.ndarray:
        """pT (GeV) of the particle of each truth edge."""
        order = np.argsort(self.particle_ids)
        pos = np.searchsorted(self.particle_ids[order], self.truth_particle)
        return self.particle_pt[order[np.minimum(pos, len(order) - 1)]]

    def labels(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Per edge: True when ``(src, dst)`` joins a truth pair, in either direction."""
        return edge_truth(src, dst, self.truth_src, self.truth_dst, self.n_nodes)

    def subset(self, keep: np.ndarray) -> GraphSample:
        """The sample restricted to the space points ``keep`` (bool mask), relabelled; truth
        edges with both ends kept (training on sectors of dense events)."""
        new_id = np.cumsum(keep) - 1
        both = keep[self.truth_src] & keep[self.truth_dst]
        return GraphSample(
            event_id=self.event_id, x=self.x[keep], xyz=self.xyz[keep],
            module=self.module[keep], particle=self.particle[keep],
            truth_src=new_id[self.truth_src[both]], truth_dst=new_id[self.truth_dst[both]],
            truth_particle=self.truth_particle[both], particle_ids=self.particle_ids,
            particle_vertex=self.particle_vertex, particle_pt=self.particle_pt)

    def phi_sectors(self, sectors: int, margin: float) -> list[GraphSample]:
        """The sample cut into ``sectors`` phi slices, each widened by ``margin`` (units of pi)
        on both sides (``subset`` of each); 1 sector: ``[self]``."""
        if sectors <= 1:
            return [self]
        phi = self.x[:, 1].astype(np.float64)  # node feature 1: phi / pi
        width = 2.0 / sectors
        out = []
        for j in range(sectors):
            off = np.remainder(phi - (-1.0 + width * (j + 0.5)) + 1.0, 2.0) - 1.0
            keep = np.abs(off) <= width / 2 + margin
            if keep.sum() >= 2:
                out.append(self.subset(keep))
        return out

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (atomically) that ``load`` reads back."""
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        arrays["feature_version"] = np.asarray(FEATURE_VERSION)
        path = Path(path)

        def write(p: Path) -> None:
            with open(p, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types kwargs as allow_pickle

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GraphSample:
        """Read a sample written by ``save``; refuses another feature version."""
        with np.load(path) as z:
            version = int(z["feature_version"])
            if version != FEATURE_VERSION:
                raise ValueError(f"{path}: feature version {version}, this taas uses "
                                 f"{FEATURE_VERSION}; delete the cache to rebuild it")
            kw = {f.name: z[f.name] for f in fields(cls)}
        kw["event_id"] = int(kw["event_id"])
        return cls(**kw)


def front_end(event: Event) -> dict[str, np.ndarray]:
    """Clustering + space points on the CPU backend (through the registry, as pipelines do):
    all tensors both stages produce. An event without cells is given as space points: its
    tensors come from its hits (``taas.reco.hit_spacepoints``), as in the pipelines."""
    if not has_cells(event):
        return spacepoint_inputs(event)
    clustered = resolve("clustering", "cpu")(event.detector).run(event.cells.to_tensors())
    return {**clustered, **resolve("spacepoints", "cpu")(event.detector).run(clustered)}


def build_sample(event: Event, tensors: dict[str, np.ndarray] | None = None, *,
                 feature_set: str | None = None) -> GraphSample:
    """The sample of ``event``; ``tensors`` are the front end's outputs if already computed.

    ``feature_set`` (``taas.gnn.features.FEATURE_SETS``): None takes ``"cells"`` for an event
    with cells and ``"positions"`` for one given as space points, so training on events without
    cells trains the positions-only models."""
    t = front_end(event) if tensors is None else tensors
    if feature_set is None:
        feature_set = "cells" if has_cells(event) else "positions"
    meas = Measurements.from_tensors(t)
    clusters = Clusters.from_tensors(t)
    sp = Spacepoints.from_tensors(t)
    feats = SpacepointFeatures.from_tensors(t)
    meas_particle = measurement_particles(truth_cell_hit_ids(event), clusters.cluster_id,
                                          len(meas), event.hits)
    particle = meas_particle[sp.measurement_index]
    xyz = np.stack([sp.x, sp.y, sp.z], axis=1)
    module = meas.module_key[sp.measurement_index]
    parts = event.particles
    vertex = np.stack([parts.vx, parts.vy, parts.vz], axis=1)
    t_src, t_dst, t_part = truth_edges(particle, xyz, module, parts.particle_id, vertex)
    return GraphSample(
        event_id=int(event.event_id),
        x=node_features(sp.columns(), feats.columns(), feature_set=feature_set), xyz=xyz,
        module=module, particle=particle, truth_src=t_src, truth_dst=t_dst,
        truth_particle=t_part, particle_ids=np.asarray(parts.particle_id, np.uint64),
        particle_vertex=vertex, particle_pt=np.asarray(parts.pt, np.float64))


def prepare_samples(events_dir: str | Path, cache_dir: str | Path, *,
                    event_ids: Iterable[int] | None = None,
                    progress: bool = True) -> list[Path]:
    """Build (or reuse) the cached sample of each event of a dataset; returns the npz paths.

    A cached file is reused when it exists and has this taas' ``FEATURE_VERSION``.
    """
    ds = open_dataset(events_dir)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    ids = list(ds.event_ids) if event_ids is None else list(event_ids)
    paths = []
    for i in tqdm(ids, desc="samples", unit="event", disable=not progress):
        path = cache / f"{event_stem(i)}.npz"
        if path.exists():
            try:
                GraphSample.load(path)
                paths.append(path)
                continue
            except (ValueError, KeyError, OSError) as exc:
                log.info("rebuilding %s: %s", path, exc)
        build_sample(ds.read(i)).save(path)
        paths.append(path)
    return paths


def load_samples(paths: Sequence[str | Path]) -> list[GraphSample]:
    """Load cached samples."""
    return [GraphSample.load(p) for p in paths]


def orient_edges(src: np.ndarray, dst: np.ndarray, xyz: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each edge pointed away from the origin (src nearer it; ties: smaller index first).

    Truth edges point away from the production vertex; orienting graph edges the same way gives
    the edge features (``dr``, ``dz`` ...) a consistent sign, as ACORN does.
    """
    dist = np.einsum("ij,ij->i", xyz, xyz)
    ds_, dd = dist[src], dist[dst]
    flip = (dd < ds_) | ((dd == ds_) & (dst < src))
    return np.where(flip, dst, src), np.where(flip, src, dst)


def knn_pairs(points: np.ndarray, r: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed pairs ``(i, j)``: the up to ``k`` nearest neighbours ``j != i`` within ``r``.

    ``taas.gnn.frnn.frnn_cpu`` (scipy k-d tree), the same definition as the accelerator FRNN.
    """
    from taas.gnn.frnn import frnn_cpu

    if len(points) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy()
    return frnn_cpu(np.asarray(points), r, k)


def radius_graph(embedding: np.ndarray, xyz: np.ndarray, r: float, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Undirected graph of the ``k``-nearest-within-``r`` pairs of ``embedding``.

    Each unordered pair appears once (union of both directions), oriented by ``orient_edges``.
    """
    src, dst = knn_pairs(embedding, r, k)
    a, b = unique_pairs(src, dst, len(embedding))
    return orient_edges(a, b, xyz)


@numba.njit(cache=True)
def unique_pairs(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct unordered pairs ``(a, b)``, ``a < b``, of directed edges on ``n`` nodes,
    sorted by ``(a, b)`` (what ``np.unique`` of ``a * n + b`` gives, in linear time: a
    counting sort by ``a``, then each node's few partners sorted in place; the sort of all
    pair keys took 0.46 s of a ``large`` event's graph construction)."""
    m = len(src)
    start = np.zeros(n + 1, np.int64)
    for e in range(m):
        start[min(src[e], dst[e]) + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    fill = start[:-1].copy()
    partner = np.empty(m, np.int64)
    for e in range(m):
        a = min(src[e], dst[e])
        partner[fill[a]] = max(src[e], dst[e])
        fill[a] += 1
    out_a = np.empty(m, np.int64)
    out_b = np.empty(m, np.int64)
    out = 0
    for a in range(n):
        lo, hi = start[a], start[a + 1]
        for i in range(lo + 1, hi):
            key = partner[i]
            j = i - 1
            while j >= lo and partner[j] > key:
                partner[j + 1] = partner[j]
                j -= 1
            partner[j + 1] = key
        for i in range(lo, hi):
            if i == lo or partner[i] != partner[i - 1]:
                out_a[out] = a
                out_b[out] = partner[i]
                out += 1
    return out_a[:out], out_b[:out]
