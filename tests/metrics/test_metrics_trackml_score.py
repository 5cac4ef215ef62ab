"""TrackML score: hand-made answers, and the real sample's perfect and random assignments."""

from __future__ import annotations

import numpy as np
import pytest

from taas.edm import TruthHits
from taas.errors import InputError
from taas.metrics.trackml_score import hit_track_labels, trackml_score, trackml_score_hits
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml

# particle 1: hits 0-3, particle 2: hits 4-6, particle 3: hits 7-10, noise: 11
PARTICLE = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 0], np.uint64)
WEIGHT = np.array([0.1, 0.05, 0.05, 0.1, 0.08, 0.04, 0.08, 0.1, 0.05, 0.05, 0.1, 0.0])


def hits_table(hit_id: np.ndarray) -> TruthHits:
    n = len(PARTICLE)
    z = np.zeros(n)
    return TruthHits(hit_id=hit_id, particle_id=PARTICLE, module_key=np.zeros(n, np.uint64),
                     tx=z, ty=z, tz=z, tt=z, tpx=z, tpy=z, tpz=z, weight=WEIGHT, ref_u=z, ref_v=z)


def test_hand_made_score():
    label = np.array([
        7, 7, 7, 8,    # track 7: 3 of particle 1's 4 + one of particle 2: good (3/4, 3/4)
        7, 9, 9,       # track 9: 2 of particle 2's 3, nothing else: good (2/2, 2/3)
        5, 5, 6, 6,    # particle 3 split 2 + 2: neither half is > 50% of the particle
        -1])           # noise unassigned
    # track 8: particle 1's hit 3 alone: 1/1 of track but 1/4 of the particle: not good
    expected = WEIGHT[0:3].sum() + WEIGHT[5:7].sum()
    assert trackml_score(label, PARTICLE, WEIGHT) == pytest.approx(expected)
    perfect = np.where(PARTICLE == 0, -1, PARTICLE.astype(np.int64))
    assert trackml_score(perfect, PARTICLE, WEIGHT) == pytest.approx(WEIGHT.sum())
    assert trackml_score(np.full(12, -1), PARTICLE, WEIGHT) == 0.0


def test_submission_wrapper_matches():
    hit_id = np.arange(100, 112)
    hits = hits_table(hit_id)
    # particle 1 fully, particle 3 with 3 of 4; the rest missing from the submission
    score = trackml_score_hits(np.array([100, 101, 102, 103, 107, 108, 109]),
                               np.array([1, 1, 1, 1, 2, 2, 2]), hits)
    assert score == pytest.approx(WEIGHT[0:4].sum() + WEIGHT[7:10].sum())
    with pytest.raises(InputError, match="more than one track"):
        trackml_score_hits(np.array([100, 100]), np.array([1, 2]), hits)


def test_hit_track_labels_from_measurement_tracks():
    hits = hits_table(np.arange(100, 112))
    # cells: hit 100 -> m0 (2 cells), hit 101 -> m0 and m1 (1 + 2 cells), hit 102 -> m2,
    # hit 103 -> unclustered cell
    cell_hit = np.array([100, 100, 101, 101, 101, 102, 103])
    cell_cluster = np.array([0, 0, 0, 1, 1, 2, -1])
    # tracks: T0 = [m0, m2], T1 = [m1, m2] (m2 shared: takes the lower track, T0)
    labels = hit_track_labels(np.array([0, 2, 4]), np.array([0, 2, 1, 2]), 3,
                              cell_hit_id=cell_hit, cell_cluster_id=cell_cluster, hits=hits)
    assert labels[:4].tolist() == [0, 1, 0, -1]
    assert (labels[4:] == -1).all()


@needs_trackml
def test_real_sample_perfect_and_random_assignment():
    from taas.detector.trackml import load_trackml_detector
    from taas.events.trackml import read_trackml_event

    event = read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID,
                               load_trackml_detector(TRACKML_DIR / "detectors.csv.gz"))
    h = event.hits
    pid = h["particle_id"]
    w = h["weight"]
    assert w[pid == 0].sum() == 0.0  # noise carries no weight
    # a 5 % subsample: the weights do not sum to 1, but perfect truth scores all of them
    perfect = np.where(pid == 0, -1, pid.astype(np.int64))
    best = trackml_score(perfect, pid, w)
    assert best == pytest.approx(w.sum(), rel=1e-12)
    # noise as singleton tracks changes nothing
    singles = np.where(pid == 0, 10**12 + np.arange(len(pid)), pid.astype(np.int64))
    assert trackml_score(singles, pid, w) == pytest.approx(best, rel=1e-12)
    rng = np.random.default_rng(7)
    random = rng.integers(0, len(event.particles), len(pid))
    assert trackml_score(random, pid, w) < 0.05 * best
    # through the submission wrapper: same answer
    assert trackml_score_hits(h["hit_id"], perfect, h) == pytest.approx(best, rel=1e-12)
    # through measurement tracks: one measurement per hit, one track per particle
    cell_cluster = np.searchsorted(np.sort(h["hit_id"]), event.cells["hit_id"])
    order = np.argsort(h["hit_id"])
    meas_pid = pid[order]
    real = np.flatnonzero(meas_pid != 0)
    by_particle = real[np.argsort(meas_pid[real], kind="stable")]
    _, starts = np.unique(meas_pid[by_particle], return_index=True)
    offsets = np.r_[starts, len(by_particle)]
    labels = hit_track_labels(offsets, by_particle, len(h), cell_hit_id=event.cells["hit_id"],
                              cell_cluster_id=cell_cluster, hits=h)
    assert trackml_score(labels, pid, w) == pytest.approx(best, rel=1e-12)
