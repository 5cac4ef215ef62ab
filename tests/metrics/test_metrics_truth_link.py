"""Measurement truth: majority vote of cells, deterministic ties, dangling links refused."""

from __future__ import annotations

import numpy as np
import pytest

from taas.edm import TruthHits
from taas.errors import InputError
from taas.metrics.truth_link import (
    hit_particles,
    majority_label,
    measurement_particles,
    particle_measurement_counts,
)


def truth_hits(hit_ids: list[int], particle_ids: list[int]) -> TruthHits:
    n = len(hit_ids)
    z = np.zeros(n)
    return TruthHits(hit_id=np.array(hit_ids), particle_id=np.array(particle_ids, np.uint64),
                     module_key=np.zeros(n, np.uint64), tx=z, ty=z, tz=z, tt=z, tpx=z, tpy=z,
                     tpz=z, weight=z, ref_u=z, ref_v=z)


# hit 10 -> particle 5, 11 -> 3, 12 -> 7, 13 -> noise, 14 -> 5
HITS = truth_hits([14, 10, 11, 12, 13], [5, 5, 3, 7, 0])


def test_majority_of_cells_with_ties():
    cell_hit = np.array([10, 10, 11,   # m0: 5, 5, 3 -> 5
                         12, 11,       # m1: 7 vs 3 tie -> smaller id 3
                         13, 10,       # m2: noise vs 5 tie -> particle 5 wins over noise
                         13, 13, 12,   # m3: noise 2 vs 7 -> noise
                         -1, -1, 14,   # m4: no-truth cells vote noise: 0 (2) vs 5 (1) -> 0
                         10, 14,       # m6: two hits of particle 5 -> 5
                         11])          # unclustered: ignored
    cell_cluster = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 6, 6, -1])
    got = measurement_particles(cell_hit, cell_cluster, 7, HITS)
    assert got.dtype == np.uint64
    assert got.tolist() == [5, 3, 5, 0, 0, 0, 5]  # m5 has no cells -> 0
    # the answer does not depend on cell order
    perm = np.random.default_rng(1).permutation(len(cell_hit))
    assert measurement_particles(cell_hit[perm], cell_cluster[perm], 7, HITS).tolist() == \
        got.tolist()


def test_dangling_truth_link_is_an_error():
    with pytest.raises(InputError, match="hit_id 99"):
        hit_particles(np.array([10, 99]), HITS)
    with pytest.raises(InputError, match="cluster ids"):
        measurement_particles(np.array([10]), np.array([0, 1]), 2, HITS)
    with pytest.raises(InputError, match="group index"):
        majority_label(np.array([3]), np.array([1]), 2)


def test_majority_label_weights_and_empty():
    out = majority_label(np.array([0, 0, 0]), np.array([1, 2, 2]), 2,
                         weight=np.array([5.0, 1.0, 1.0]), fill=-1)
    assert out.tolist() == [1, -1]
    assert majority_label(np.zeros(0, np.int64), np.zeros(0, np.int64), 3, fill=-1).tolist() \
        == [-1, -1, -1]


def test_particle_measurement_counts():
    mp = np.array([5, 5, 3, 0, 5], np.uint64)
    assert particle_measurement_counts(mp, np.array([3, 5, 9], np.uint64)).tolist() == [1, 3, 0]
    assert particle_measurement_counts(np.zeros(0, np.uint64), np.array([1], np.uint64)).tolist() \
        == [0]
