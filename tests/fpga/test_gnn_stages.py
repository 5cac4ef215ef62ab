"""The FPGA GNN stages on a ``tiny`` event: registered, constructible as ``cls(detector,
config)``, honest about their device, and close to the float CPU stages (same graph up to the
edges whose filter score sits at the cut, the same GNN decisions on nearly every edge)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.fpga.conftest import FPGA_MISSING

if FPGA_MISSING:
    pytest.skip("the FPGA GNN needs hls4ml and torch: pip install 'taas[fpga,gnn]'",
                allow_module_level=True)

from backends.cpu.edge_classification import CpuEdgeClassification
from backends.cpu.graph_construction import CpuGraphConstruction
from backends.fpga.config import FpgaConfig, FpgaGnnStageConfig
from backends.fpga.edge_classification import FpgaEdgeClassification
from backends.fpga.graph_construction import FpgaGraphConstruction
from taas.stages.configs import build_config
from taas.stages.registry import resolve

pytestmark = pytest.mark.fpga
log = logging.getLogger(__name__)


def edge_keys(edges: dict[str, np.ndarray], n: int) -> np.ndarray:
    return edges["edges.src"].astype(np.int64) * n + edges["edges.dst"]


def test_registry_gives_the_fpga_stages() -> None:
    assert resolve("graph_construction", "fpga") is FpgaGraphConstruction
    assert resolve("edge_classification", "fpga") is FpgaEdgeClassification


def test_stage_config_takes_the_fpga_settings_from_the_mapping() -> None:
    config = build_config(FpgaGraphConstruction,
                          {"filter_cut": 0.2, "fpga": {"data": "ap_fixed<16,6>"}})
    assert isinstance(config, FpgaGnnStageConfig)
    assert config.filter_cut == 0.2
    assert config.fpga == FpgaConfig(data=(16, 6))
    with pytest.raises(ValueError, match="unknown FpgaConfig key"):
        FpgaGnnStageConfig(fpga={"bits": 3})
    with pytest.raises(ValueError, match="reuse_factor"):
        FpgaConfig(reuse_factor=0)
    with pytest.raises(ValueError, match="integer"):
        FpgaConfig(data="ap_fixed<8,12>")


def test_fpga_stages_agree_with_the_float_cpu_stages(gnn_tiny_event, gnn_fpga_chain) -> None:
    tensors, _ = gnn_tiny_event
    n = len(tensors["spacepoints.x"])
    cpu_graph = CpuGraphConstruction(None).run(tensors)
    cpu_scored = CpuEdgeClassification(None).run({**tensors, **cpu_graph})
    construction = FpgaGraphConstruction(None, {"fpga": {}})
    classification = FpgaEdgeClassification(None, FpgaGnnStageConfig(fpga=FpgaConfig()))
    assert construction.chain.compiled == classification.chain.compiled == 0  # cached
    assert construction.device.startswith("fpga (hls4ml C simulation")
    assert "on cpu" in construction.device  # the radius search stays on the CPU
    assert classification.device.startswith("fpga (hls4ml C simulation")

    graph = construction.run(tensors)
    same = np.intersect1d(edge_keys(graph, n), edge_keys(cpu_graph, n))
    union = np.union1d(edge_keys(graph, n), edge_keys(cpu_graph, n))
    log.info("graph: %d fpga / %d cpu edges, %d in common", len(graph["edges.src"]),
             len(cpu_graph["edges.src"]), len(same))
    assert len(same) >= 0.98 * len(union)

    # the GNN on the CPU stage's graph, so that both score the same edges
    scored = classification.run({**tensors, **cpu_graph})
    np.testing.assert_array_equal(scored["edges.src"], cpu_graph["edges.src"])
    np.testing.assert_array_equal(scored["edges.dst"], cpu_graph["edges.dst"])
    diff = np.abs(scored["edges.score"] - cpu_scored["edges.score"])
    agree = np.mean((scored["edges.score"] > 0.5) == (cpu_scored["edges.score"] > 0.5))
    log.info("GNN scores: max |fpga - cpu| %.4f, decisions at 0.5 agree on %.4f of %d edges",
             diff.max(), agree, len(diff))
    assert agree >= 0.99
    assert np.median(diff) < 0.01


def test_empty_graph_gives_empty_edges(gnn_tiny_event, gnn_fpga_chain) -> None:
    tensors, _ = gnn_tiny_event
    stage = FpgaEdgeClassification(None)
    empty = {"edges.src": np.zeros(0, np.int64), "edges.dst": np.zeros(0, np.int64),
             "edges.score": np.zeros(0, np.float32)}
    out = stage.run({**tensors, **empty})
    assert len(out["edges.src"]) == 0
