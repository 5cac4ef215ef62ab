"""The modelled FPGA hardware figures: the stated rules on hand-made layers, layer sizes read
from the shipped checkpoints, the per-event streaming model, and the benchmark's JSON."""

from __future__ import annotations

import json
import math
import runpy
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from backends.fpga.hardware_model import (
    ELABD_2022,
    HUANG_SYNTHESIZED,
    DenseLayer,
    EventWorkload,
    MlpBlock,
    ModelAssumptions,
    estimate_block,
    event_model,
    interaction_network_blocks,
    published_design_check,
)

ROOT = Path(__file__).resolve().parents[2]


def test_dense_layer_by_hand():
    """64 -> 64 ReLU at reuse 8, 16-bit: 512 lanes, a DSP each; 8 + 6 + 2 + 1 cycles."""
    a = ModelAssumptions(reuse_factor=8, weight_bits=16, activation_bits=16)
    e = estimate_block(MlpBlock("b", "gnn", "edge", (DenseLayer(64, 64, "relu"),)), a)
    assert (e.n_weights, e.dsp, e.ii_cycles, e.latency_cycles) == (4096, 512, 8, 17)
    assert e.latency_ns == pytest.approx(17 * 5.0)
    assert e.lut == 512 * (16 + 16 + 6) + 512 * 16
    assert e.bram18 == 0  # Latency strategy: weights are fabric constants


def test_narrow_weights_use_no_dsp_and_resource_strategy_uses_bram():
    layer = (DenseLayer(64, 64, "relu"),)
    narrow = estimate_block(MlpBlock("b", "gnn", "edge", layer), ModelAssumptions(weight_bits=8))
    assert narrow.dsp == 0
    resource = estimate_block(MlpBlock("b", "gnn", "edge", layer),
                              ModelAssumptions(strategy="resource", reuse_factor=8))
    # 512 lanes x 16 bits read per cycle through 72-bit ports; capacity alone needs 4
    assert resource.bram18 == math.ceil(512 * 16 / 72)


def test_reuse_trades_dsps_for_initiation_interval():
    block = MlpBlock("b", "gnn", "edge", (DenseLayer(192, 64, "relu"), DenseLayer(64, 64, "relu")))
    one, sixteen = (estimate_block(block, ModelAssumptions(reuse_factor=r)) for r in (1, 16))
    assert (one.ii_cycles, sixteen.ii_cycles) == (1, 16)
    assert one.dsp == 192 * 64 + 64 * 64
    assert sixteen.dsp == math.ceil(192 * 64 / 16) + math.ceil(64 * 64 / 16)
    assert sixteen.latency_cycles > one.latency_cycles


@pytest.mark.parametrize("bad", [{"clock_mhz": 0}, {"device": "stratix"}, {"reuse_factor": 0},
                                 {"weight_bits": 1.5}, {"strategy": "fast"},
                                 {"device_fill": 1.5}, {"frontend_instances": 0}])
def test_assumptions_are_validated(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ModelAssumptions(**bad)


def _workload(scale: float = 1.0) -> EventWorkload:
    return EventWorkload("toy", cells=20_000 * scale, spacepoints=6_000 * scale,
                         graph_edges=50_000 * scale, filtered_edges=10_000 * scale,
                         gnn_iterations=6)


def test_event_model_streams_items_at_the_reuse_interval():
    blocks = interaction_network_blocks(hidden=8)
    a = ModelAssumptions(reuse_factor=4)
    small, double = event_model(_workload(), blocks, a), event_model(_workload(2), blocks, a)
    assert small["fits_device"]
    copies = small["chain_copies"]
    assert copies > 1
    # R1 and R2 see the filtered edges, O the nodes, each one sample per 4 cycles per copy
    per_copy_cycles = 4 * (10_000 + 6_000 + 10_000) + sum(
        estimate_block(b, a).latency_cycles for b in blocks)
    assert small["stage_time_us"]["gnn"] == pytest.approx(per_copy_cycles / copies / 200.0)
    assert double["stage_time_us"]["gnn"] > 1.9 * small["stage_time_us"]["gnn"]
    slowest = max(small["stage_time_us"].values())
    assert small["events_per_s_per_device"] == pytest.approx(1e6 / slowest)
    assert small["event_latency_us"] == pytest.approx(sum(small["stage_time_us"].values()))


def test_a_chain_too_big_for_the_device_is_flagged():
    huge = [MlpBlock("gnn.x", "gnn", "edge", (DenseLayer(1024, 1024, "relu"),) * 4)]
    result = event_model(_workload(), huge, ModelAssumptions(reuse_factor=1))
    assert not result["fits_device"]
    assert result["utilisation"]["dsp"] > 1


def test_published_design_check_uses_its_size_and_precision():
    check = published_design_check(ELABD_2022, hidden=8)
    assert check["assumptions"]["weight_bits"] == 14
    assert check["assumptions"]["reuse_factor"] == ELABD_2022.reuse_factor == 8
    r1, o, r2 = check["blocks"]
    assert r1["layers"][0]["n_in"] == 2 * 3 + 4  # two nodes' features and the edge's
    cycles = 8 * (896 + 448 + 896) + r1["latency_cycles"] + o["latency_cycles"] + r2[
        "latency_cycles"]
    assert check["modelled_section_latency_cycles"] == cycles
    assert check["modelled_section_latency_us"] == pytest.approx(cycles * 5e-3)
    assert "latency_model_over_reported" not in check  # nothing reported to compare with


def test_model_against_a_synthesized_interaction_network():
    """The synthesized design (Vivado HLS report: 151 cycles, interval 46, 5,120 DSPs for 112
    nodes / 204 edges at ap_fixed<16,8>, reuse 1) processes the section in parallel; the model
    streams it. Same order of latency, and the DSP-cycles one graph occupies within 30%."""
    check = published_design_check(HUANG_SYNTHESIZED, hidden=8)
    assert check["assumptions"]["reuse_factor"] == 1
    assert check["assumptions"]["weight_bits"] == 16
    cycles = check["modelled_section_latency_cycles"]
    assert cycles > 204 + 112 + 204  # every edge twice and every node once, one per cycle
    assert 1 <= check["latency_model_over_reported"] < 10
    assert check["latency_model_over_reported"] == pytest.approx(cycles / 151)
    per_graph = check["dsp_cycles_per_graph"]
    assert per_graph["reported"] == 5120 * 46
    assert per_graph["modelled"] == check["modelled_dsp"] * cycles
    assert 0.7 < per_graph["model_over_reported"] < 1.3


def test_layer_sizes_come_from_the_shipped_checkpoints():
    pytest.importorskip("torch", reason="reading the checkpoints needs torch")
    from backends.fpga.hardware_model import mlp_blocks_from_checkpoints
    from taas.gnn.checkpoint import SHIPPED, load_shipped

    checkpoints = {name: load_shipped(name) for name in SHIPPED}
    blocks = {b.name: b for b in mlp_blocks_from_checkpoints(checkpoints)}
    embedding = checkpoints["embedding"].config
    layers = blocks["embedding.net"].layers
    assert layers[0].n_in == embedding["n_features"]
    assert layers[-1].n_out == embedding["emb_dim"]
    assert layers[0].activation == embedding["activation"]
    assert len(layers) == embedding["n_layers"]
    gnn = checkpoints["gnn"].model
    assert blocks["gnn.node_nets.0"].layers[0].n_in == gnn.node_nets[0][0].in_features
    n_weights = sum(p.numel() for n, p in gnn.classifier.named_parameters()
                    if n.endswith("weight") and p.ndim == 2)
    assert estimate_block(blocks["gnn.classifier"], ModelAssumptions()).n_weights == n_weights


def test_benchmark_writes_a_labelled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("torch", reason="reading the checkpoints needs torch")
    sizes = {"cells": 2e4, "spacepoints": 6e3}
    edges = {"graph": {"edges_per_event": 5e4}, "filter": {"edges_per_event": 1e4}}
    workloads = tmp_path / "gnn_scaling.json"
    workloads.write_text(json.dumps({"results": [
        {"preset": p, "mean_sizes": sizes, "edges": edges} for p in ("small", "medium")]}))
    out = tmp_path / "model.json"
    monkeypatch.setattr(sys, "argv", ["fpga_hardware_model.py", "--workloads", str(workloads),
                                      "--out", str(out)])
    runpy.run_path(str(ROOT / "benchmarks" / "fpga_hardware_model.py"), run_name="__main__")
    result = json.loads(out.read_text())
    assert result["label"].startswith("MODELLED")
    assert result["assumptions"] == asdict(ModelAssumptions())
    assert "reuse factor" in result["rules"]
    assert [r["preset"] for r in result["per_preset"]] == ["small", "medium"]
    assert {b["name"] for b in result["blocks"]} >= {"embedding.net", "filter.net",
                                                     "gnn.classifier"}
