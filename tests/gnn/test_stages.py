"""The GNN inference stages (graph_construction, edge_classification) on a tiny event: plausible
efficiency, the same graph as the training code, CPU and GPU (CPU device) backends agreeing,
bf16 autocast close to fp32, and degenerate events giving empty edges."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.cpu.edge_classification import CpuEdgeClassification
from backends.cpu.graph_construction import CpuGraphConstruction
from backends.gpu.edge_classification import GpuEdgeClassification
from backends.gpu.graph_construction import GpuGraphConstruction
from taas.events.dataset import open_dataset
from taas.gnn.checkpoint import SHIPPED, load_shipped, save_checkpoint
from taas.gnn.data import GraphSample, build_sample, front_end, radius_graph
from taas.gnn.frnn import frnn_torch
from taas.gnn.stages import GnnStageConfig, undirected_oriented
from taas.gnn.track_building import CudaUnavailableError
from taas.gnn.training import GraphCounts, embed, score_event

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def event_tensors(tiny_sim_dir: Path) -> tuple[dict[str, np.ndarray], GraphSample]:
    """Front-end tensors (clusters, measurements, space points + features) and truth."""
    ds = open_dataset(tiny_sim_dir)
    event = ds.read(ds.event_ids[0])
    tensors = front_end(event)
    return tensors, build_sample(event, tensors)


@pytest.fixture(scope="module")
def cpu_stages() -> tuple[CpuGraphConstruction, CpuEdgeClassification]:
    return CpuGraphConstruction(None), CpuEdgeClassification(None)


@pytest.fixture(scope="module")
def gpu_stages() -> tuple[GpuGraphConstruction, GpuEdgeClassification]:
    return GpuGraphConstruction(None), GpuEdgeClassification(None)


def _run(stages: tuple, tensors: dict[str, np.ndarray]
         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    graph = stages[0].run(tensors)
    return graph, stages[1].run({**tensors, **graph})


def _counts(sample: GraphSample, edges: dict[str, np.ndarray], cut: float = 0.0
            ) -> dict[str, float]:
    keep = edges["edges.score"] > cut
    c = GraphCounts()
    c.add(sample, edges["edges.src"][keep], edges["edges.dst"][keep], 1.0)
    return c.result()


def test_stages_find_the_truth_edges(event_tensors, cpu_stages) -> None:
    tensors, sample = event_tensors
    graph, scored = _run(cpu_stages, tensors)
    g = _counts(sample, graph)
    assert g["efficiency"] > 0.95
    assert g["purity"] > 0.3
    gnn = _counts(sample, scored, cut=0.5)
    assert gnn["efficiency"] > 0.9
    assert gnn["purity"] > 0.9
    # edge classification rescores the same edges, it never adds or drops any
    np.testing.assert_array_equal(scored["edges.src"], graph["edges.src"])
    np.testing.assert_array_equal(scored["edges.dst"], graph["edges.dst"])


def test_stage_graph_is_the_training_graph(event_tensors, cpu_stages) -> None:
    """The stages build the graph the models were validated on (taas.gnn.training)."""
    tensors, sample = event_tensors
    graph, scored = _run(cpu_stages, tensors)
    ck = {name: load_shipped(name) for name in SHIPPED}
    ref = score_event(sample, ck["embedding"].model, ck["filter"].model, ck["gnn"].model,
                      r=ck["embedding"]["r"], k=ck["embedding"]["k"],
                      filter_cut=ck["filter"]["cut"], gnn_cut=0.0)
    src, dst, fscore = ref["filter"]
    np.testing.assert_array_equal(graph["edges.src"], src)
    np.testing.assert_array_equal(graph["edges.dst"], dst)
    np.testing.assert_allclose(graph["edges.score"], fscore, atol=1e-5)
    np.testing.assert_allclose(scored["edges.score"], ref["gnn"][2], atol=1e-5)


def test_cpu_and_gpu_backends_agree(event_tensors, cpu_stages, gpu_stages) -> None:
    tensors, _ = event_tensors
    cpu_graph, cpu_scored = _run(cpu_stages, tensors)
    gpu_graph, gpu_scored = _run(gpu_stages, tensors)
    if NO_CUDA:  # same device, same FRNN: identical graphs, scores equal to float rounding
        np.testing.assert_array_equal(cpu_graph["edges.src"], gpu_graph["edges.src"])
        np.testing.assert_array_equal(cpu_graph["edges.dst"], gpu_graph["edges.dst"])
        np.testing.assert_allclose(cpu_scored["edges.score"], gpu_scored["edges.score"],
                                   atol=1e-5)
        for stage in gpu_stages:
            assert "CUDA unavailable" in stage.device
        assert "k-d tree" in gpu_stages[0].device
    else:  # bf16 on CUDA: the same decisions on nearly every edge
        assert abs(len(cpu_graph["edges.src"]) - len(gpu_graph["edges.src"])) \
            <= 0.01 * len(cpu_graph["edges.src"])


def test_whole_graph_and_chunked_gnn_agree(event_tensors, cpu_stages) -> None:
    """``gnn_chunk=0`` runs the GNN's ``forward`` on the whole graph, the default its
    ``forward_chunked``: the same scores to float rounding."""
    tensors, _ = event_tensors
    graph, chunked = _run(cpu_stages, tensors)
    whole = CpuEdgeClassification(None, {"gnn_chunk": 0}).run({**tensors, **graph})
    assert len(graph["edges.src"]) > 100
    np.testing.assert_array_equal(whole["edges.src"], chunked["edges.src"])
    np.testing.assert_allclose(whole["edges.score"], chunked["edges.score"], atol=1e-5)


def test_torch_frnn_path_builds_the_same_graph(event_tensors, cpu_stages) -> None:
    """The CUDA path (frnn_torch + torch dedup/orientation), run on the CPU device, gives the
    radius graph of the k-d tree path."""
    _, sample = event_tensors
    stage = cpu_stages[0]
    emb = embed(stage.models["embedding"].model, sample.x)
    src, dst = frnn_torch(torch.from_numpy(emb), stage.r, stage.k)
    a, b = undirected_oriented(src, dst, torch.from_numpy(sample.xyz), sample.n_nodes)
    ref_src, ref_dst = radius_graph(emb, sample.xyz, stage.r, stage.k)
    np.testing.assert_array_equal(a.numpy(), ref_src)
    np.testing.assert_array_equal(b.numpy(), ref_dst)


class _Bf16Mixin:
    """bf16 autocast on the CPU device: what the CUDA stages run, measured here on a CPU."""

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16)


class _Bf16Graph(_Bf16Mixin, CpuGraphConstruction):
    pass


class _Bf16Edges(_Bf16Mixin, CpuEdgeClassification):
    pass


def test_bf16_autocast_scores_match_fp32(event_tensors, cpu_stages) -> None:
    tensors, sample = event_tensors
    graph, scored = _run(cpu_stages, tensors)
    graph16 = _Bf16Graph(None).run(tensors)
    scored16 = _Bf16Edges(None).run({**tensors, **graph})  # same edges, bf16 GNN
    n_edges = len(graph["edges.src"])
    assert abs(len(graph16["edges.src"]) - n_edges) <= 0.01 * n_edges
    diff = np.abs(scored16["edges.score"] - scored["edges.score"])
    assert np.median(diff) < 0.01
    agree = (scored16["edges.score"] > 0.5) == (scored["edges.score"] > 0.5)
    assert agree.mean() > 0.99
    eff32, eff16 = _counts(sample, scored, 0.5), _counts(sample, scored16, 0.5)
    assert abs(eff32["efficiency"] - eff16["efficiency"]) < 0.01


@pytest.mark.parametrize("n", [0, 1, 2])
def test_degenerate_events_give_empty_edges(event_tensors, cpu_stages, gpu_stages, n) -> None:
    tensors, _ = event_tensors
    few = {k: (v[:n] if k.startswith(("spacepoints.", "spacepoint_features.")) else v)
           for k, v in tensors.items()}
    for stages in (cpu_stages, gpu_stages):
        graph, scored = _run(stages, few)
        assert len(graph["edges.src"]) == 0 or n == 2  # two points may pair up
        assert len(scored["edges.src"]) == len(graph["edges.src"])


def test_no_edge_after_the_cut(event_tensors) -> None:
    tensors, _ = event_tensors
    graph = GpuGraphConstruction(None, {"filter_cut": 1.0}).run(tensors)
    assert len(graph["edges.src"]) == 0
    scored = GpuEdgeClassification(None).run({**tensors, **graph})
    assert len(scored["edges.src"]) == 0
    assert scored["edges.score"].dtype == np.float32


def test_config_checkpoint_dir_and_overrides(event_tensors, tmp_path: Path) -> None:
    tensors, _ = event_tensors
    for name in SHIPPED:
        ck = load_shipped(name)
        save_checkpoint(tmp_path / f"{name}.pt", ck.model, kind=ck.kind, metadata=ck.metadata)
    a = CpuGraphConstruction(None, {"checkpoint_dir": str(tmp_path)}).run(tensors)
    b = CpuGraphConstruction(None).run(tensors)
    np.testing.assert_array_equal(a["edges.src"], b["edges.src"])
    fewer = CpuGraphConstruction(None, GnnStageConfig(k=2)).run(tensors)
    assert len(fewer["edges.src"]) < len(b["edges.src"])
    with pytest.raises(ValueError, match="unknown GnnStageConfig key"):
        CpuGraphConstruction(None, {"radius": 0.1})


@pytest.mark.skipif(not NO_CUDA, reason="checks the behaviour without CUDA")
def test_gpu_stage_without_fallback_refuses_to_run_on_cpu() -> None:
    with pytest.raises(CudaUnavailableError):
        GpuGraphConstruction(None, {"allow_cpu_fallback": False})
    with pytest.raises(CudaUnavailableError):
        GpuEdgeClassification(None, {"allow_cpu_fallback": False})


def test_compile_applies_on_cuda_only() -> None:
    """``compile`` (opt-in) compiles the per-edge models on CUDA; the CPU device runs the
    eager models and its device string does not claim a compiler."""
    assert not GnnStageConfig().compile
    on = {"compile": True}
    graph, edges = GpuGraphConstruction(None, on), GpuEdgeClassification(None, on)
    for stage in (graph, edges):
        if NO_CUDA:
            assert stage.compiled == {}
            assert "torch.compile" not in stage.device
        else:
            assert set(stage.compiled) == set(stage.EDGE_MODELS)
            assert "torch.compile" in stage.device
    assert graph.EDGE_MODELS == ("filter",)
    assert edges.EDGE_MODELS == ("gnn",)
