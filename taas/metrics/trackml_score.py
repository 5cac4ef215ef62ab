"""The TrackML challenge score (Amrouche et al., "The Tracking Machine Learning challenge:
accuracy phase", 2019, arXiv:1904.06778; reference code ``trackml.score.score_event``).

Each truth hit carries a weight (``TruthHits.weight``; larger for the first and last hits of a
track and for high-pT particles, 0 for noise and for particles with fewer than 4 hits; the
weights of a full event sum to 1). Each reconstructed track is assigned to its majority
particle (most hits; ties to the smallest particle id, noise included as a candidate, as in the
reference code). The track is *good* when the shared hits are more than half of the track's
hits and more than half of the particle's hits (double majority). The score is the sum of the
weights of the shared hits of good tracks: 1 for a perfect reconstruction of a full event.

Unlike the challenge, hits may be left unassigned (label < 0): they join no track but still
count among their particle's hits, so leaving hits out costs score exactly as it should.
"""

from __future__ import annotations

import numpy as np

from taas.edm import TruthHits
from taas.errors import InputError
from taas.metrics.matching import check_csr
from taas.metrics.truth_link import hit_rows, majority_label


def trackml_score(track_label: np.ndarray, particle_id: np.ndarray,
                  weight: np.ndarray) -> float:
    """Score of one event; arrays are per truth hit (track label, true particle, weight)."""
    label = np.asarray(track_label, np.int64)
    particle = np.asarray(particle_id, np.uint64)
    weight = np.asarray(weight, np.float64)
    if not (label.shape == particle.shape == weight.shape):
        raise InputError("trackml_score: track_label, particle_id and weight differ in length")
    pids, particle_nhits = np.unique(particle, return_counts=True)
    assigned = label >= 0
    t, p, w = label[assigned], particle[assigned], weight[assigned]
    if len(t) == 0:
        return 0.0
    order = np.lexsort((p, t))
    t, p, w = t[order], p[order], w[order]
    starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (p[1:] != p[:-1])])
    pair_t, pair_p = t[starts], p[starts]
    pair_n = np.diff(np.r_[starts, len(t)])
    pair_w = np.add.reduceat(w, starts)
    track_ids, track_nhits = np.unique(t, return_counts=True)
    # majority pair per track: most hits, then smallest particle id
    best = np.lexsort((pair_p, -pair_n, pair_t))
    first = best[np.r_[True, pair_t[best][1:] != pair_t[best][:-1]]]
    maj_n = pair_n[first]
    maj_track_n = track_nhits[np.searchsorted(track_ids, pair_t[first])]
    maj_particle_n = particle_nhits[np.searchsorted(pids, pair_p[first])]
    good = (2 * maj_n > maj_track_n) & (2 * maj_n > maj_particle_n)
    return float(pair_w[first][good].sum())


def trackml_score_hits(hit_id: np.ndarray, track_id: np.ndarray, hits: TruthHits) -> float:
    """Score of a challenge-style submission: (hit_id, track_id) rows against ``hits``.

    Hits of ``hits`` missing from the submission are unassigned; a hit listed twice is an error.
    """
    hit_id = np.asarray(hit_id, np.int64)
    track_id = np.asarray(track_id, np.int64)
    if hit_id.shape != track_id.shape:
        raise InputError("trackml_score_hits: hit_id and track_id differ in length")
    rows = hit_rows(hit_id, hits)
    if np.any(rows < 0):
        raise InputError("trackml_score_hits: hit_id -1 in submission")
    if len(np.unique(rows)) != len(rows):
        raise InputError("trackml_score_hits: a hit is assigned to more than one track")
    label = np.full(len(hits), -1, np.int64)
    label[rows] = track_id
    return trackml_score(label, hits["particle_id"], hits["weight"])


def hit_track_labels(offsets: np.ndarray, indices: np.ndarray, n_measurements: int, *,
                     cell_hit_id: np.ndarray, cell_cluster_id: np.ndarray,
                     hits: TruthHits) -> np.ndarray:
    """Track label of each truth hit (row of ``hits``; -1 = on no track), from measurement tracks.

    A measurement on several tracks takes the first (lowest index) track; each cell takes its
    measurement's track; each truth hit takes the track most of its cells are on (ties: a track
    over none, then the lowest index). This lets measurement-level tracks from any pipeline be
    scored with the hit-level TrackML weights.
    """
    offsets, indices = check_csr(offsets, indices, n_measurements)
    cell_hit_id = np.asarray(cell_hit_id, np.int64)
    cell_cluster_id = np.asarray(cell_cluster_id, np.int64)
    if cell_hit_id.shape != cell_cluster_id.shape:
        raise InputError("hit_track_labels: cell_hit_id and cell_cluster_id differ in length")
    if len(cell_cluster_id) and cell_cluster_id.max() >= n_measurements:
        raise InputError(f"hit_track_labels: cluster id outside 0..{n_measurements - 1}")
    entry_track = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    meas_track = np.full(n_measurements, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(meas_track, indices, entry_track)
    meas_track[meas_track == np.iinfo(np.int64).max] = -1
    cell_track = np.where(cell_cluster_id >= 0,
                          meas_track[np.maximum(cell_cluster_id, 0)], -1)
    rows = hit_rows(cell_hit_id, hits)
    keep = rows >= 0
    return majority_label(rows[keep], cell_track[keep], len(hits), disfavour=-1,
                          fill=-1).astype(np.int64)
