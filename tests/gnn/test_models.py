"""GNN models and features: shapes, determinism, permutation invariance, fx tracing, autocast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taas.gnn.features import (
    EDGE_FEATURE_NAMES,
    N_EDGE_FEATURES,
    N_NODE_FEATURES,
    NODE_FEATURE_NAMES,
    edge_features,
    node_features,
)
from taas.gnn.models import (
    EdgeFilter,
    EmbeddingConfig,
    EmbeddingMLP,
    FilterConfig,
    GNNConfig,
    InteractionGNN,
    aggregate,
    build_model,
    concat_block,
    edge_block,
    endpoint_terms,
    make_mlp,
)

SMALL_GNN = GNNConfig(hidden=16, n_iterations=3)


def random_graph(n: int = 40, e: int = 160, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_NODE_FEATURES, generator=g)
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    return x, src, dst, edge_features(x, src, dst)


def make(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    configs = {"embedding": EmbeddingConfig(hidden=32), "filter": FilterConfig(hidden=32),
               "gnn": SMALL_GNN}
    return build_model(kind, configs[kind].to_dict()).eval()


def run(model: torch.nn.Module, graph: tuple, kind: str) -> torch.Tensor:
    return model(graph[0]) if kind == "embedding" else model(*graph)


def test_node_features_order_and_scaling() -> None:
    sp = {"r": np.array([500.0]), "phi": np.array([math.pi / 2]), "z": np.array([-1500.0]),
          "eta": np.array([-1.0])}
    cf = {"n_cells": np.array([3]), "charge": np.array([0.5]), "extent_u": np.array([0.1]),
          "extent_v": np.array([5.0]), "local_angle": np.array([math.pi / 4]),
          "local_eta": np.array([np.inf]), "global_eta": np.array([-9.0]),
          "global_phi": np.array([math.pi])}
    x = node_features(sp, {f"spacepoint_features.{k}": v for k, v in cf.items()})
    assert x.shape == (1, N_NODE_FEATURES) == (1, len(NODE_FEATURE_NAMES))
    assert x.dtype == np.float32
    got = dict(zip(NODE_FEATURE_NAMES, x[0], strict=True))
    assert got["r"] == pytest.approx(0.5)
    assert got["phi"] == pytest.approx(0.5)
    assert got["z"] == pytest.approx(-0.5)
    assert got["local_angle"] == pytest.approx(0.5)
    assert got["local_eta"] == pytest.approx(2.0)  # +inf (shape vector along w) is clipped
    assert got["global_eta"] == pytest.approx(-2.0)  # clipped
    assert got["sin_phi"] == pytest.approx(1.0)
    assert np.all(np.isfinite(x))


def test_edge_features_wrap_phi() -> None:
    x = torch.zeros(2, N_NODE_FEATURES)
    x[:, 0] = torch.tensor([0.1, 0.2])
    x[:, 1] = torch.tensor([0.99, -0.99])  # across +-pi
    ef = edge_features(x, torch.tensor([0]), torch.tensor([1]))
    assert ef.shape == (1, N_EDGE_FEATURES) == (1, len(EDGE_FEATURE_NAMES))
    assert ef[0, 1].item() == pytest.approx(0.02, abs=1e-5)
    assert ef[0, 0].item() == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["embedding", "filter", "gnn"])
def test_deterministic_with_seed(kind: str) -> None:
    graph = random_graph()
    a, b, c = make(kind, 1), make(kind, 1), make(kind, 2)
    with torch.no_grad():
        assert torch.equal(run(a, graph, kind), run(b, graph, kind))
        assert not torch.equal(run(a, graph, kind), run(c, graph, kind))


def test_embedding_is_unit_norm() -> None:
    emb = make("embedding", 0)(random_graph()[0])
    assert emb.shape == (40, EmbeddingConfig().emb_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(40), atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_embedding_equals_forward(chunk: int) -> None:
    torch.manual_seed(0)
    model = build_model("embedding").eval()
    x = torch.randn(200, N_NODE_FEATURES)
    with torch.inference_mode():
        chunked = model.forward_chunked(x, chunk)
        torch.testing.assert_close(chunked, model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("recurrent", [True, False])
def test_interaction_gnn_permutation_invariant(recurrent: bool) -> None:
    torch.manual_seed(3)
    model = InteractionGNN(GNNConfig(hidden=16, n_iterations=3, recurrent=recurrent)).eval()
    x, src, dst, attr = random_graph(seed=5)
    node_perm = torch.randperm(len(x))
    edge_perm = torch.randperm(len(src))
    inverse = torch.argsort(node_perm)  # new index of each old node
    x2 = x[node_perm]
    src2, dst2 = inverse[src][edge_perm], inverse[dst][edge_perm]
    with torch.no_grad():
        ref = model(x, src, dst, attr)
        got = model(x2, src2, dst2, edge_features(x2, src2, dst2))
    torch.testing.assert_close(got, ref[edge_perm], rtol=1e-4, atol=1e-5)


def test_aggregate_sum_max_and_isolated_nodes() -> None:
    msg = torch.tensor([[1.0, -2.0], [3.0, -4.0], [5.0, 6.0]])
    out = aggregate(msg, torch.tensor([0, 0, 2]), 4)
    expected = torch.tensor([[4.0, -6.0, 3.0, -2.0], [0, 0, 0, 0], [5.0, 6.0, 5.0, 6.0],
                             [0, 0, 0, 0]])
    assert torch.equal(out, expected)


@pytest.mark.parametrize("kind", ["embedding", "filter", "gnn"])
def test_fx_traceable_and_autocast_safe(kind: str) -> None:
    model = make(kind, 0)
    graph = random_graph()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        ref = run(model, graph, kind)
        torch.testing.assert_close(run(traced, graph, kind), ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = run(model, graph, kind).float()
    assert torch.all(torch.isfinite(low))
    assert low.shape == ref.shape


def test_blocks_are_plain_sequential_mlps() -> None:
    """The hls4ml path converts each block as an nn.Sequential of Linear/LayerNorm/act."""
    allowed = (torch.nn.Linear, torch.nn.LayerNorm, torch.nn.ReLU, torch.nn.Tanh, torch.nn.SiLU)
    for model in (EmbeddingMLP(), EdgeFilter(), InteractionGNN()):
        seqs = [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]
        assert seqs
        for seq in seqs:
            assert all(isinstance(layer, allowed) for layer in seq)


def test_config_round_trip_and_unknown_kind() -> None:
    cfg = GNNConfig(hidden=8, n_iterations=2)
    model = build_model("gnn", cfg.to_dict())
    assert model.config == cfg
    with pytest.raises(ValueError, match="valid"):
        build_model("transformer")


@pytest.mark.parametrize("recurrent", [True, False])
@pytest.mark.parametrize("chunk", [7, 50, 1000])
def test_chunked_gnn_matches_forward(recurrent: bool, chunk: int) -> None:
    """Chunked inference (edges and nodes ``chunk`` at a time) gives ``forward``'s logits,
    isolated nodes included."""
    torch.manual_seed(3)
    model = InteractionGNN(GNNConfig(hidden=16, n_iterations=3, recurrent=recurrent)).eval()
    x, src, dst, attr = random_graph(n=60, e=150, seed=4)  # some of the 60 nodes have no edge
    with torch.no_grad():
        full = model(x, src, dst, attr)
    chunked = model.forward_chunked(x, src, dst, attr, chunk)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)


def test_split_first_linear_equals_concatenated_input() -> None:
    """The per-node terms of ``edge_block`` and the per-part products of ``concat_block``
    equal the MLP applied to the concatenated input (float64: agreement to 1e-12, so any
    misplaced weight column would show)."""
    torch.manual_seed(5)
    net = make_mlp(2 * 8 + 3, 8, 8, 2, layer_norm=True, output_activation=True).double()
    h = torch.randn(12, 8, dtype=torch.float64)
    extra = torch.randn(30, 3, dtype=torch.float64)
    src, dst = torch.randint(0, 12, (30,)), torch.randint(0, 12, (30,))
    with torch.no_grad():
        want = net(torch.cat([h[src], h[dst], extra], dim=1))
        got = edge_block(net, *endpoint_terms(net, h), src, dst, extra)
        parts = [torch.randn(7, w, dtype=torch.float64) for w in (8, 5, 3, 3)]
        want_parts = net(torch.cat(parts, dim=1))
        got_parts = concat_block(net, parts)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_parts, want_parts, rtol=1e-12, atol=1e-12)
