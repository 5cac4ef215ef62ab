"""Truth links: which simulated particle made each reconstructed measurement.

Every metric starts here. A measurement is a cluster of cells; each cell points at the truth hit
that fired it (``Cells.hit_id``), and each truth hit at its particle (``TruthHits.particle_id``,
0 = noise). Clustering can merge cells of two hits, so a measurement's particle is decided by a
vote of its cells rather than taken from any one of them.
"""

from __future__ import annotations

import numpy as np

from taas.edm import TruthHits
from taas.edm.lookup import find_rows
from taas.errors import InputError


def majority_label(group: np.ndarray, label: np.ndarray, n_groups: int, *,
                   weight: np.ndarray | None = None, disfavour: int | None = None,
                   fill: int = 0) -> np.ndarray:
    """The most frequent ``label`` of each group ``0..n_groups-1`` (``fill`` for empty groups).

    ``weight`` gives each vote a weight (default 1). Ties go first against ``disfavour`` (e.g.
    the noise label 0, so a real particle wins a tie with noise), then to the smallest label, so
    the answer never depends on input order. Vectorised: one lexsort over the (group, label)
    pairs, no Python loop over entries.
    """
    group = np.asarray(group, np.int64)
    label = np.asarray(label)
    if group.shape != label.shape:
        raise InputError(f"majority_label: group {group.shape} and label {label.shape} differ")
    w = np.ones(len(group)) if weight is None else np.asarray(weight, np.float64)
    out = np.full(n_groups, fill, dtype=label.dtype if label.size else np.int64)
    if group.size == 0:
        return out
    if group.min() < 0 or group.max() >= n_groups:
        raise InputError(f"majority_label: group index outside 0..{n_groups - 1}")
    # total weight of each distinct (group, label) pair
    order = np.lexsort((label, group))
    g, lab, ws = group[order], label[order], w[order]
    new = np.r_[True, (g[1:] != g[:-1]) | (lab[1:] != lab[:-1])]
    starts = np.flatnonzero(new)
    pair_g, pair_lab = g[starts], lab[starts]
    pair_w = np.add.reduceat(ws, starts)
    # best pair per group: largest weight, then not the disfavoured label, then smallest label
    penalty = (np.zeros(len(pair_lab), bool) if disfavour is None
               else pair_lab == np.asarray(disfavour, pair_lab.dtype))
    best = np.lexsort((pair_lab, penalty, -pair_w, pair_g))
    first = np.r_[True, pair_g[best][1:] != pair_g[best][:-1]]
    winners = best[first]
    out[pair_g[winners]] = pair_lab[winners]
    return out


def hit_rows(hit_id: np.ndarray, hits: TruthHits) -> np.ndarray:
    """Row in ``hits`` of each truth hit id (-1 for id -1 = no truth).

    Raises on an id that is neither -1 nor in ``hits``: a dangling truth link is a reader bug
    that would otherwise read as noise and bias every rate.
    """
    hit_id = np.asarray(hit_id, np.int64)
    rows = np.full(len(hit_id), -1, np.int64)
    known = hit_id >= 0
    if not np.any(known):
        return rows
    found_rows, found = find_rows(hits["hit_id"], hit_id[known])
    if not np.all(found):
        bad = hit_id[known][~found][0]
        raise InputError(f"hit_id {bad} is not in the truth hits table "
                         f"({int((~found).sum())} links affected)")
    rows[known] = found_rows
    return rows


def hit_particles(hit_id: np.ndarray, hits: TruthHits) -> np.ndarray:
    """Particle id of each truth hit id in ``hit_id`` (0 for -1 = no truth, and for noise)."""
    rows = hit_rows(hit_id, hits)
    out = np.zeros(len(rows), np.uint64)
    out[rows >= 0] = hits["particle_id"][rows[rows >= 0]]
    return out


def measurement_particles(cell_hit_id: np.ndarray, cell_cluster_id: np.ndarray,
                          n_measurements: int, hits: TruthHits) -> np.ndarray:
    """Truth particle of each measurement (uint64; 0 = noise or no truth).

    Each cell votes for the particle of its truth hit (``hit_id`` -1 votes for 0); the particle
    with most cells wins. Ties go to a real particle over noise, then to the smallest particle
    id. Cells with ``cluster_id`` < 0 (not clustered) do not vote; measurements with no cells get 0.
    """
    cell_hit_id = np.asarray(cell_hit_id, np.int64)
    cell_cluster_id = np.asarray(cell_cluster_id, np.int64)
    if cell_hit_id.shape != cell_cluster_id.shape:
        raise InputError(f"measurement_particles: {len(cell_hit_id)} cell hit ids but "
                         f"{len(cell_cluster_id)} cluster ids")
    clustered = cell_cluster_id >= 0
    particle = hit_particles(cell_hit_id[clustered], hits)
    return majority_label(cell_cluster_id[clustered], particle, n_measurements,
                          disfavour=0, fill=0).astype(np.uint64)


def particle_measurement_counts(measurement_particle: np.ndarray,
                                particle_ids: np.ndarray) -> np.ndarray:
    """Number of measurements of each particle in ``particle_ids`` (aligned, int64).

    This is the denominator of "fraction of the particle's hits on the track" (two-way
    matching): counted on the measurements the tracker could use, not on simulated hits, so
    that merged clusters and clustering losses do not make a perfect track look incomplete.
    """
    measurement_particle = np.asarray(measurement_particle, np.uint64)
    particle_ids = np.asarray(particle_ids, np.uint64)
    ids, counts = np.unique(measurement_particle, return_counts=True)
    rows, found = find_rows(ids, particle_ids)
    return np.where(found, counts[rows] if len(ids) else 0, 0).astype(np.int64)
