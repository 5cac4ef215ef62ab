"""Heterogeneous node encoders of the interaction GNN (``GNNConfig.heterogeneous``): the default
model is unchanged, pixel and strip nodes go through their own encoder, checkpoints keep the
flag, the FPGA conversion refuses the model, and it trains on the ``tiny`` events."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from taas.detector.acts_generic import STRIP_VOLUMES
from taas.detector.geometry_id import decode
from taas.gnn.checkpoint import load_checkpoint, load_shipped, save_checkpoint
from taas.gnn.data import GraphSample, load_samples, prepare_samples
from taas.gnn.features import N_NODE_FEATURES, edge_features, strip_mask
from taas.gnn.models import GNNConfig, InteractionGNN, build_model, uses_strip_mask
from taas.gnn.training import GNNTraining, TrainingConfig, phi_sectors, to_graph, train_gnn

HOMOGENEOUS = GNNConfig(hidden=16, n_iterations=2)
HETEROGENEOUS = dataclasses.replace(HOMOGENEOUS, heterogeneous=True)


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """The machine's cores are shared: one torch thread, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def graph(n: int = 50, e: int = 200, seed: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random graph with about half its nodes on strips (the first nodes are one of each)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_NODE_FEATURES, generator=g)
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    strip = torch.rand(n, generator=g) < 0.5
    strip[:2] = torch.tensor([False, True])
    return x, src, dst, edge_features(x, src, dst), strip


def hetero(seed: int = 0) -> InteractionGNN:
    torch.manual_seed(seed)
    return InteractionGNN(HETEROGENEOUS).eval()


@pytest.fixture(scope="module")
def tiny_samples(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> list[GraphSample]:
    return load_samples(prepare_samples(tiny_sim_dir, tmp_path_factory.mktemp("samples"),
                                        progress=False))


def test_default_model_is_the_homogeneous_one_of_before() -> None:
    """Default off; the shipped checkpoint (written before the flag existed) loads strictly
    into it, so the parameter names and shapes are those of before; ``strip`` is ignored."""
    assert GNNConfig().heterogeneous is False
    shipped = load_shipped("gnn")
    assert "heterogeneous" not in shipped.config
    model = shipped.model
    assert isinstance(model, InteractionGNN)
    assert not uses_strip_mask(model)
    fresh = InteractionGNN(GNNConfig(**shipped.config))
    assert list(fresh.state_dict()) == list(model.state_dict())
    assert next(k for k in fresh.state_dict() if "encoder" in k) == "node_encoder.0.weight"
    assert not any(k.startswith("node_encoders.") for k in fresh.state_dict())
    assert isinstance(model.node_encoder, torch.nn.Sequential)
    x, src, dst, attr, strip = graph()
    with torch.no_grad():
        ref = model(x, src, dst, attr)
        torch.testing.assert_close(model(x, src, dst, attr, strip), ref, rtol=0, atol=0)


def test_strip_encoder_changes_only_strip_nodes() -> None:
    """Perturbing one encoder moves exactly the nodes of its kind, in ``encode_nodes`` and
    through ``forward`` (edges with at least one such end)."""
    model = hetero()
    x, src, dst, attr, strip = graph()
    with torch.no_grad():
        h0 = model.encode_nodes(x, strip)
        logits0 = model(x, src, dst, attr, strip)
        for kind, changed in (("strip", strip), ("pixel", ~strip)):
            perturbed = hetero()
            encoder = perturbed.node_encoders[kind]
            assert isinstance(encoder, torch.nn.Sequential)
            first = encoder[0]
            assert isinstance(first, torch.nn.Linear)
            # random, not uniform: a LayerNorm follows, and it cancels a uniform shift
            first.weight.add_(torch.randn(first.weight.shape,
                                          generator=torch.Generator().manual_seed(1)))
            h1 = perturbed.encode_nodes(x, strip)
            moved = (h1 - h0).abs().amax(dim=1) > 1e-6
            assert torch.equal(moved, changed), kind
            torch.testing.assert_close(h1[~changed], h0[~changed], rtol=0, atol=0)
            assert not torch.allclose(perturbed(x, src, dst, attr, strip), logits0)


def test_heterogeneous_model_needs_the_mask_and_traces() -> None:
    model = hetero()
    x, src, dst, attr, strip = graph()
    with pytest.raises(ValueError, match="strip mask"):
        model(x, src, dst, attr)
    with torch.no_grad():
        ref = model(x, src, dst, attr, strip)
        traced = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(traced(x, src, dst, attr, strip), ref)
        for chunk in (7, 1000):
            torch.testing.assert_close(model.forward_chunked(x, src, dst, attr, chunk, strip),
                                       ref, rtol=1e-5, atol=1e-5)
    torch.manual_seed(0)
    homogeneous = InteractionGNN(HOMOGENEOUS)
    # from the same seed the same weights everywhere (pixel encoder = node_encoder), plus the
    # strip encoder, drawn last: the variants differ by that one MLP
    hom = homogeneous.state_dict()
    het = {k.replace("node_encoders.pixel.", "node_encoder."): v
           for k, v in model.state_dict().items() if not k.startswith("node_encoders.strip.")}
    assert list(het) == list(hom)
    assert all(torch.equal(het[k], hom[k]) for k in hom)
    extra = sum(p.numel() for p in homogeneous.node_encoder.parameters())
    assert (sum(p.numel() for p in model.parameters())
            == sum(p.numel() for p in homogeneous.parameters()) + extra)


def test_checkpoint_round_trip_keeps_the_flag(tmp_path: Path) -> None:
    model = hetero(3)
    x, src, dst, attr, strip = graph(seed=1)
    path = save_checkpoint(tmp_path / "gnn.pt", model, kind="gnn", metadata={"cut": 0.3})
    loaded = load_checkpoint(path)
    assert loaded.config["heterogeneous"] is True
    assert isinstance(loaded.model, InteractionGNN)
    assert uses_strip_mask(loaded.model)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, src, dst, attr, strip),
                                   model(x, src, dst, attr, strip), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="node_encoder"):  # the two never swap weights
        build_model("gnn", HOMOGENEOUS.to_dict()).load_state_dict(model.state_dict())


def test_fpga_conversion_refuses_a_heterogeneous_model() -> None:
    """``block_nets`` reads ``model.node_encoder``: a clear error, not the pixel encoder."""
    model = hetero()
    with pytest.raises(TypeError, match="heterogeneous node encoders"):
        _ = model.node_encoder
    hls4ml_models = pytest.importorskip("backends.fpga.hls4ml_models")
    with pytest.raises(TypeError, match="FPGA backend"):
        hls4ml_models.block_nets([("gnn", model)])
    assert "gnn.node_encoder" in hls4ml_models.block_nets([("gnn", InteractionGNN(HOMOGENEOUS))])


def test_strip_mask_follows_the_volume(tiny_samples: list[GraphSample]) -> None:
    s = tiny_samples[0]
    mask = strip_mask(s.module)
    volume = decode(s.module)["volume"]
    assert mask.dtype == np.bool_
    assert mask.shape == (s.n_nodes,)
    assert np.array_equal(mask, np.isin(volume, STRIP_VOLUMES))
    assert mask.any()
    assert (~mask).any()
    assert set(np.unique(volume[~mask]).tolist()) <= {7, 8, 9}
    # the training graphs carry it, and phi sectors cut it with their nodes
    g = to_graph(s, s.truth_src, s.truth_dst, torch.device("cpu"))
    assert g.strip is not None
    assert np.array_equal(g.strip.numpy(), mask)
    for part in phi_sectors(g, 4, 0.05):
        assert part.strip is not None
        assert len(part.strip) == len(part.x)


def test_heterogeneous_gnn_trains_on_tiny_events(tiny_samples: list[GraphSample]) -> None:
    """A short training (truth edges plus as many random fakes, two phi sectors): the loss
    falls, both encoders learn, validation runs with the mask."""
    rng = np.random.default_rng(0)
    edges = []
    for s in tiny_samples:
        fake_src = rng.integers(0, s.n_nodes, len(s.truth_src))
        fake_dst = rng.integers(0, s.n_nodes, len(s.truth_src))
        edges.append((np.concatenate([s.truth_src, fake_src]),
                      np.concatenate([s.truth_dst, fake_dst])))
    config = TrainingConfig(device="cpu", gnn=HETEROGENEOUS,
                            gnn_training=GNNTraining(epochs=3, lr=5e-3, sectors=2))
    torch.manual_seed(config.seed + 2)  # train_gnn's seed: the model it will build
    initial = InteractionGNN(HETEROGENEOUS).state_dict()
    model, metrics = train_gnn(tiny_samples[:1], tiny_samples[1:], edges[:1], edges[1:],
                               config, progress=False)
    assert uses_strip_mask(model)
    history = metrics["loss_history"]
    assert all(np.isfinite(history))
    assert history[-1] < history[0]
    for kind in ("pixel", "strip"):
        key = f"node_encoders.{kind}.0.weight"
        assert not torch.equal(model.state_dict()[key], initial[key]), kind
    assert 0.0 < metrics["validation"]["efficiency"] <= 1.0
