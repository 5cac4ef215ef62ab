"""Graph sections of the FPGA GNN on hand-made graphs: every edge scored exactly once (also
across the phi wrap and after overflow splits), halos that are exactly the nodes within
``halo_hops`` hops, a sectioned GNN equal to the whole-graph one when the halo covers its
receptive field (as many hops as iterations), and a clear error when no split fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from tests.fpga.conftest import FPGA_MISSING

if FPGA_MISSING:
    pytest.skip("the FPGA GNN needs hls4ml and torch: pip install 'taas[fpga,gnn]'",
                allow_module_level=True)

from backends.fpga.config import FpgaConfig
from backends.fpga.sections import merge_scores, split_sections
from taas.errors import InputError, TaasError
from taas.gnn.checkpoint import load_shipped
from taas.gnn.features import edge_features

pytestmark = pytest.mark.fpga


def track_graph(n_tracks: int, n_layers: int, seed: int = 0, *, fakes: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Straight 'tracks' in (eta, phi), one node per layer, edges between consecutive layers
    of a track plus (``fakes``) an edge from each track's first node to a random track's
    second node, anywhere in the event."""
    rng = np.random.default_rng(seed)
    eta0 = rng.uniform(-2.5, 2.5, n_tracks)
    phi0 = rng.uniform(-math.pi, math.pi, n_tracks)
    bend = rng.normal(0.0, 0.01, n_tracks)
    layer = np.arange(n_layers)
    eta = (eta0[:, None] + 0.001 * layer).ravel()
    phi = np.mod(phi0[:, None] + bend[:, None] * layer + math.pi, 2 * math.pi).ravel() - math.pi
    node = np.arange(n_tracks * n_layers).reshape(n_tracks, n_layers)
    src = node[:, :-1].ravel()
    dst = node[:, 1:].ravel()
    if not fakes:
        return eta, phi, src, dst
    fake = rng.integers(0, n_tracks, size=n_tracks)
    src = np.concatenate([src, node[:, 0]])
    dst = np.concatenate([dst, node[fake, 1]])
    return eta, phi, src, dst


def test_every_edge_is_scored_exactly_once() -> None:
    eta, phi, src, dst = track_graph(300, 8)
    config = FpgaConfig(eta_sectors=3, phi_sectors=5, halo_hops=2)
    sections = split_sections(eta, phi, src, dst, config)
    assert len(sections) > 5
    owned = np.concatenate([s.edge_ids[s.owned] for s in sections])
    np.testing.assert_array_equal(np.sort(owned), np.arange(len(src)))
    # a section's edges are edges of the event between its own nodes, indices consistent
    for s in sections:
        np.testing.assert_array_equal(s.nodes[s.src], src[s.edge_ids])
        np.testing.assert_array_equal(s.nodes[s.dst], dst[s.edge_ids])
        assert len(s.nodes) <= config.section_nodes
    # merging each section's view of a per-edge quantity gives it back, each edge once
    merged = merge_scores(len(src), sections, [s.edge_ids * 1.0 for s in sections])
    np.testing.assert_array_equal(merged, np.arange(len(src)))


def test_sections_wrap_around_phi() -> None:
    """Nodes on both sides of phi = +-pi: the halo crosses the wrap."""
    eta = np.array([0.0, 0.0, 0.0, 0.0])
    phi = np.array([math.pi - 0.01, -math.pi + 0.01, -math.pi + 0.02, 0.0])
    src, dst = np.array([0, 1]), np.array([1, 2])
    sections = split_sections(eta, phi, src, dst,
                              FpgaConfig(eta_sectors=1, phi_sectors=4, halo_hops=1))
    first = next(s for s in sections if 0 in s.edge_ids[s.owned])
    assert {0, 1, 2} <= set(first.nodes.tolist())  # reaches across the wrap
    assert 3 not in first.nodes
    merge_scores(2, sections, [np.zeros(len(s.edge_ids)) for s in sections])


def test_an_overflowing_sector_is_split_not_truncated() -> None:
    eta, phi, src, dst = track_graph(400, 8, seed=2)
    config = FpgaConfig(eta_sectors=1, phi_sectors=1, section_nodes=400, section_edges=800,
                        halo_hops=2)
    sections = split_sections(eta, phi, src, dst, config)
    assert len(sections) >= 8  # 3200 nodes cannot fit in fewer 400-node sections
    assert all(len(s.nodes) <= 400 and len(s.edge_ids) <= 800 for s in sections)
    merge_scores(len(src), sections, [np.zeros(len(s.edge_ids)) for s in sections])


def test_a_graph_too_dense_for_any_split_is_a_clear_error() -> None:
    n = 100  # a clique of nodes at one (eta, phi): no sector split can separate them
    eta, phi = np.zeros(n), np.zeros(n)
    src, dst = np.nonzero(np.ones((n, n)) - np.eye(n))
    config = FpgaConfig(section_nodes=64, section_edges=8192)
    with pytest.raises(InputError, match="too dense"):
        split_sections(eta, phi, src, dst, config)


def test_merge_refuses_an_edge_scored_twice() -> None:
    eta, phi, src, dst = track_graph(50, 5)
    sections = split_sections(eta, phi, src, dst, FpgaConfig())
    with pytest.raises(TaasError, match="more than once"):
        merge_scores(len(src), sections + sections[:1],
                     [np.zeros(len(s.edge_ids)) for s in sections + sections[:1]])


def test_a_halo_is_every_node_within_its_hops() -> None:
    """The section of a core: the ends of its owned edges and every node within ``halo_hops``
    hops of them (edges in both directions), compared with scipy's shortest paths."""
    eta, phi, src, dst = track_graph(200, 8, seed=3)
    n = len(eta)
    adjacency = csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    for hops in (0, 1, 3):
        for s in split_sections(eta, phi, src, dst, FpgaConfig(phi_sectors=6, halo_hops=hops)):
            ends = np.unique(np.concatenate([s.nodes[s.src[s.owned]], s.nodes[s.dst[s.owned]]]))
            distance = shortest_path(adjacency, directed=False, unweighted=True,
                                     indices=ends).min(axis=0)
            np.testing.assert_array_equal(s.nodes, np.flatnonzero(distance <= hops))


def test_sectioned_float_gnn_equals_whole_graph_when_the_halo_covers_its_depth() -> None:
    """The float GNN run per section and merged gives the whole-graph logits when the halo
    has as many hops as the GNN has iterations (fake edges across the event included), and
    differs with fewer hops: the halo is what makes the sections exact."""
    eta, phi, src, dst = track_graph(120, 8, seed=4)
    gnn = load_shipped("gnn").model
    n_features = gnn.config.n_features
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.5, size=(len(eta), n_features)).astype(np.float32)
    x[:, 1] = phi / math.pi
    x[:, 3] = eta / 3.0
    xt = torch.from_numpy(x)
    st, dt = torch.from_numpy(src), torch.from_numpy(dst)

    def sectioned(hops: int) -> np.ndarray:
        config = FpgaConfig(eta_sectors=2, phi_sectors=4, halo_hops=hops)
        sections = split_sections(eta, phi, src, dst, config)
        assert len(sections) > 4
        scores = []
        for s in sections:
            xs = xt[s.nodes]
            a, b = torch.from_numpy(s.src), torch.from_numpy(s.dst)
            scores.append(gnn(xs, a, b, edge_features(xs, a, b)).numpy())
        return merge_scores(len(src), sections, scores)

    with torch.no_grad():
        whole = gnn(xt, st, dt, edge_features(xt, st, dt)).numpy()
        np.testing.assert_allclose(sectioned(gnn.config.n_iterations), whole, atol=1e-4)
        assert np.abs(sectioned(0) - whole).max() > 1e-3
