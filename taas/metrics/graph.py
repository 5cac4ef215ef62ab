"""Edge efficiency and purity of hit graphs (graph construction and edge filtering stages).

Truth edges, the target a GNN pipeline is judged against, are defined here once:

* the hits (space points) of a particle are ordered by distance from its production vertex;
* consecutive hits on the *same* module form one group: they are alternatives on one surface
  (overlapping clusters, a split cluster, a looper grazing the module), none is "before" the
  other, so they are never joined to each other;
* every hit of group k is joined to every hit of group k + 1 (all pairs), so a graph that
  keeps either alternative is not penalised for missing the other path;
* noise (particle 0) has no truth edges; a graph edge is true when it joins a truth pair in
  either direction.

This follows the ACORN ``track_edges`` convention (hits sorted by distance from the vertex,
consecutive hits linked) with the same-module rule made explicit.
"""

from __future__ import annotations

import numpy as np

from taas.edm.lookup import find_rows
from taas.errors import InputError
from taas.metrics.rates import ONE_SIGMA, binomial_rate


def _vertex_rows(sp_particle: np.ndarray, particle_ids: np.ndarray) -> np.ndarray:
    rows, found = find_rows(particle_ids, sp_particle)
    if not np.all(found):
        raise InputError(f"space point of particle {sp_particle[~found][0]} has no particle "
                         "vertex")
    return rows


def truth_edges(sp_particle: np.ndarray, sp_xyz: np.ndarray, sp_module: np.ndarray,
                particle_ids: np.ndarray, particle_vertex: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth edges ``(src, dst, particle)``; src is the hit nearer the production vertex.

    ``sp_xyz`` (n, 3) positions, ``sp_module`` the module of each space point,
    ``particle_vertex`` (n_particles, 3) aligned with ``particle_ids``.
    """
    sp_particle = np.asarray(sp_particle, np.uint64)
    sp_xyz = np.asarray(sp_xyz, np.float64)
    sp_module = np.asarray(sp_module)
    particle_ids = np.asarray(particle_ids, np.uint64)
    particle_vertex = np.asarray(particle_vertex, np.float64)
    n = len(sp_particle)
    if sp_xyz.shape != (n, 3) or sp_module.shape != (n,):
        raise InputError(f"truth_edges: sp_xyz {sp_xyz.shape} / sp_module {sp_module.shape} do "
                         f"not match {n} space points")
    if particle_vertex.shape != (len(particle_ids), 3):
        raise InputError("truth_edges: particle_vertex must be (n_particles, 3)")
    idx = np.flatnonzero(sp_particle != 0)
    empty = np.zeros(0, np.int64)
    if len(idx) == 0:
        return empty, empty, np.zeros(0, np.uint64)
    part = sp_particle[idx]
    vertex = particle_vertex[_vertex_rows(part, particle_ids)]
    dist = np.linalg.norm(sp_xyz[idx] - vertex, axis=1)
    module = sp_module[idx]
    order = np.lexsort((idx, module, dist, part))
    idx, part, module = idx[order], part[order], module[order]

    new_group = np.r_[True, (part[1:] != part[:-1]) | (module[1:] != module[:-1])]
    start = np.flatnonzero(new_group)
    size = np.diff(np.r_[start, len(idx)])
    gpart = part[start]
    # consecutive group pairs (g, g + 1) of the same particle
    g = np.flatnonzero(gpart[:-1] == gpart[1:])
    na, nb = size[g], size[g + 1]
    n_pairs = na * nb
    pair = np.repeat(np.arange(len(g)), n_pairs)
    k = np.arange(n_pairs.sum()) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    src = idx[start[g][pair] + k // nb[pair]]
    dst = idx[start[g + 1][pair] + k % nb[pair]]
    return src.astype(np.int64), dst.astype(np.int64), gpart[g][pair]


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Direction-free key of each pair (min * n + max)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    return np.minimum(a, b) * np.int64(n) + np.maximum(a, b)


def edge_truth(src: np.ndarray, dst: np.ndarray, truth_src: np.ndarray, truth_dst: np.ndarray,
               n_spacepoints: int) -> np.ndarray:
    """Per graph edge: True when it joins a truth pair, in either direction."""
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if src.shape != dst.shape:
        raise InputError("edge_truth: src and dst differ in length")
    if len(src) and (min(src.min(), dst.min()) < 0
                     or max(src.max(), dst.max()) >= n_spacepoints):
        raise InputError(f"edge_truth: edge index outside 0..{n_spacepoints - 1}")
    return np.isin(_pair_keys(src, dst, n_spacepoints),
                   _pair_keys(truth_src, truth_dst, n_spacepoints))


def edge_metrics(src: np.ndarray, dst: np.ndarray, *, sp_particle: np.ndarray,
                 sp_xyz: np.ndarray, sp_module: np.ndarray, particle_ids: np.ndarray,
                 particle_vertex: np.ndarray, target_particles: np.ndarray | None = None,
                 cl: float = ONE_SIGMA) -> dict[str, object]:
    """Edge efficiency and purity of the graph ``(src, dst)``.

    efficiency = distinct truth pairs present in the graph / truth pairs; purity = graph edges
    that are true / graph edges (an edge listed twice counts twice). ``target_particles``
    (e.g. fiducial particles) adds ``target_efficiency`` over their truth edges only, the
    figure GNN papers quote. Values are ``rates.Rate`` objects; counts are plain ints.
    """
    n = len(sp_particle)
    t_src, t_dst, t_part = truth_edges(sp_particle, sp_xyz, sp_module, particle_ids,
                                       particle_vertex)
    is_true = edge_truth(src, dst, t_src, t_dst, n)
    graph_keys = np.unique(_pair_keys(src, dst, n)[is_true])
    found = np.isin(_pair_keys(t_src, t_dst, n), graph_keys)
    out: dict[str, object] = {
        "n_edges": len(is_true),
        "n_true_edges": int(is_true.sum()),
        "n_truth_edges": len(t_src),
        "efficiency": binomial_rate(int(found.sum()), len(found), cl),
        "purity": binomial_rate(int(is_true.sum()), len(is_true), cl),
    }
    if target_particles is not None:
        target = np.isin(t_part, np.asarray(target_particles, np.uint64))
        out["target_efficiency"] = binomial_rate(int(found[target].sum()), int(target.sum()), cl)
    return out
