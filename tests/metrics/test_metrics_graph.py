"""Truth edges and edge efficiency/purity on a hand-made two-particle event."""

from __future__ import annotations

import numpy as np
import pytest

from taas.errors import InputError
from taas.metrics.graph import edge_metrics, edge_truth, truth_edges

# Space points listed out of order on purpose. Particle 1 from the origin along +x:
#   sp 3 (x=30, module 10) and sp 0 (x=31, module 10): two hits on one module,
#   sp 5 (x=70, module 20), sp 1 (x=110, module 30).
# Particle 2 from (0, 0, 500) along +y: sp 2 (y=50, module 11), sp 6 (y=90, module 21).
# sp 4: noise on module 20.
SP_PARTICLE = np.array([1, 1, 2, 1, 0, 1, 2], np.uint64)
SP_XYZ = np.array([[31, 0, 0], [110, 0, 0], [0, 50, 500], [30, 0, 0], [70, 1, 0], [70, 0, 0],
                   [0, 90, 500]], np.float64)
SP_MODULE = np.array([10, 30, 11, 10, 20, 20, 21])
PARTICLE_IDS = np.array([2, 1], np.uint64)
VERTEX = np.array([[0, 0, 500], [0, 0, 0]], np.float64)


def truth_set() -> set[tuple[int, int, int]]:
    src, dst, part = truth_edges(SP_PARTICLE, SP_XYZ, SP_MODULE, PARTICLE_IDS, VERTEX)
    return set(zip(src.tolist(), dst.tolist(), part.tolist(), strict=True))


def test_truth_edges_link_module_groups_all_to_all():
    # both hits of module 10 link to module 20's hit, never to each other; noise has no edge
    assert truth_set() == {(3, 5, 1), (0, 5, 1), (5, 1, 1), (2, 6, 2)}


def test_vertex_sets_the_order():
    # particle 2 coming from far out (y=200) runs inwards: its edge flips
    vertex = np.array([[0, 200, 500], [0, 0, 0]], np.float64)
    src, dst, _ = truth_edges(SP_PARTICLE, SP_XYZ, SP_MODULE, PARTICLE_IDS, vertex)
    assert (6, 2) in set(zip(src.tolist(), dst.tolist(), strict=True))


def test_edge_truth_either_direction_and_noise_never_true():
    src, dst, _ = truth_edges(SP_PARTICLE, SP_XYZ, SP_MODULE, PARTICLE_IDS, VERTEX)
    g_src = np.array([5, 3, 3, 4, 4, 2, 1])
    g_dst = np.array([3, 0, 5, 5, 1, 6, 1])
    assert edge_truth(g_src, g_dst, src, dst, 7).tolist() == \
        [True, False, True, False, False, True, False]


def test_edge_metrics_counts():
    g_src = np.array([5, 5, 3, 3, 4, 2])
    g_dst = np.array([3, 3, 0, 5, 5, 6])  # (5,3) twice and (3,5): one truth pair three times
    m = edge_metrics(g_src, g_dst, sp_particle=SP_PARTICLE, sp_xyz=SP_XYZ, sp_module=SP_MODULE,
                     particle_ids=PARTICLE_IDS, particle_vertex=VERTEX,
                     target_particles=np.array([1], np.uint64))
    assert m["n_truth_edges"] == 4
    assert m["n_edges"] == 6
    assert m["n_true_edges"] == 4  # 3 copies of (3,5) + (2,6)
    assert m["purity"].value == pytest.approx(4 / 6)
    assert m["efficiency"].value == pytest.approx(2 / 4)  # (3,5) and (2,6) found
    assert m["target_efficiency"].value == pytest.approx(1 / 3)  # particle 1: (3,5) of 3


def test_graph_inputs_checked():
    with pytest.raises(InputError, match="no particle vertex"):
        truth_edges(SP_PARTICLE, SP_XYZ, SP_MODULE, PARTICLE_IDS[:1], VERTEX[:1])
    with pytest.raises(InputError, match="outside"):
        edge_truth(np.array([0]), np.array([7]), np.zeros(0), np.zeros(0), 7)
    src, dst, part = truth_edges(np.zeros(3, np.uint64), np.zeros((3, 3)), np.zeros(3),
                                 PARTICLE_IDS, VERTEX)
    assert len(src) == len(dst) == len(part) == 0
