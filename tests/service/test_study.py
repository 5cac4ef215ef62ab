"""The service-option study on a real tritonserver: every option reproduces direct, the bytes
counted are the tensors' sizes, mixed chains serve exactly the stages asked, and the Prometheus
parser reads the server's own metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.events.dataset import open_dataset
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, CPU, FPGA
from taas.service.study import (
    OutputTolerance,
    StageChain,
    StudySettings,
    applicable,
    compare_outputs,
    make_chain,
    option,
    parse_prometheus,
    per_model_counters,
    queue_vs_compute,
    run_study,
    scrape,
    served_vs_direct_view,
)
from tests.service.conftest import FRONT_END, assert_same

pytestmark = pytest.mark.triton


def _metrics_url(server: object) -> str:
    return f"http://{server.host}:{server.metrics_port}/metrics"  # type: ignore[attr-defined]


def test_options_that_apply_to_each_pipeline() -> None:
    keys = {spec.name: [o.key for o in applicable(spec)[0]] for spec in (CPU, ACORN, FPGA)}
    assert keys["cpu"] == ["S0", "S3", "S4", "custom"]
    assert keys["acorn"] == ["S0", "S1", "S2", "S3", "S4", "custom"]
    assert keys["fpga"] == keys["acorn"]
    reasons = applicable(CPU)[1]
    assert "graph_construction" in reasons["S1"]
    assert "graph_construction" in reasons["S2"]
    assert option("S1").served == ("graph_construction", "edge_classification")


def test_mixed_chain_serves_only_the_stages_asked(triton, tiny_sim_dir: Path,
                                                  tiny_event) -> None:
    detector = open_dataset(tiny_sim_dir).detector
    want = Pipeline(FRONT_END, detector).run(tiny_event).tensors
    chain = StageChain(FRONT_END, detector, triton.url, ["spacepoints"])
    try:
        got = chain.run_event(tiny_event)
        where = {p["stage"]: p["where"] for p in chain.placement()}
        request, response, calls = chain.meter.take()
    finally:
        chain.close()
    assert where == {"clustering": "in-process", "spacepoints": "served", "seeding": "in-process"}
    assert_same(got, want)
    stage = Pipeline(FRONT_END, detector).stages[1]
    sent = sum(want[s.name].nbytes for s in stage.INPUTS)
    received = sum(want[s.name].nbytes for s in stage.OUTPUTS)
    assert (request, response, calls) == (sent, received, 1)


def test_every_option_equals_direct_and_bytes_are_the_tensors(triton, tiny_sim_dir: Path,
                                                             tiny_event) -> None:
    detector = open_dataset(tiny_sim_dir).detector
    url = _metrics_url(triton)
    result = run_study(FRONT_END, detector, [tiny_event], triton.url, metrics_url=url,
                       settings=StudySettings(repeats=2, concurrency=(1, 2), requests=4))
    rows = {r["key"]: r for r in result["options"]}
    assert list(rows) == ["S0", "S3", "S4", "custom"]
    assert {s["key"] for s in result["skipped"]} == {"S1", "S2"}
    direct = Pipeline(FRONT_END, detector).run(tiny_event).tensors
    event_bytes = sum(a.nbytes for a in tiny_event.values())
    outputs = {name: a for name, a in direct.items() if name not in tiny_event}
    whole_model = event_bytes + sum(a.nbytes for a in outputs.values())
    per_stage = sum(direct[s.name].nbytes for stage in Pipeline(FRONT_END, detector).stages
                    for s in (*stage.INPUTS, *stage.OUTPUTS))
    assert rows["S0"]["bytes_per_event"] == 0
    assert rows["S3"]["bytes_per_event"] == per_stage
    assert rows["S3"]["served_calls_per_event"] == 3
    for key in ("S4", "custom"):
        assert rows[key]["bytes_per_event"] == whole_model
        assert rows[key]["served_calls_per_event"] == 1
    for row in rows.values():
        assert row["outputs_equal"], row["differences"]
        assert row["outputs_identical"], row["not_identical"]
        assert len(row["seconds"]) == 2
        assert row["overhead_vs_direct"] > 0
        assert [p["concurrency"] for p in row["throughput"]] == [1, 2]
        assert all(p["errors"] == 0 and p["events"] == 4 for p in row["throughput"])
    assert [p["where"] for p in rows["S3"]["placement"]] == ["served"] * 3
    assert result["transport"] == "shared memory"
    models = {r["model"]: r for r in result["prometheus"]["rows"]}
    # the sweep sent 4 events per point and option: 2 points x 4 to each stage model from S3,
    # as many through the ensemble, and the pipeline model's own 8
    assert models["pipeline_front_end"]["requests"] == 8
    assert models["clustering_cpu"]["requests"] == 16
    assert all(r["compute_infer_ms"] > 0 and r["queue_ms"] >= 0 for r in models.values())
    view = served_vs_direct_view(result)
    assert view["model"] == "pipeline_front_end"
    assert view["outputs_identical"]
    assert view["ratio"] == pytest.approx(rows["custom"]["mean_s"] / rows["S0"]["mean_s"])


def test_gRPC_transport_moves_the_same_bytes(triton, tiny_sim_dir: Path, tiny_event) -> None:
    detector = open_dataset(tiny_sim_dir).detector
    chain = make_chain(option("custom"), FRONT_END, detector, triton.url, shared_memory=False)
    try:
        got = chain.run_event(tiny_event)
        request, response, _ = chain.meter.take()
    finally:
        chain.close()
    assert request == sum(a.nbytes for a in tiny_event.values())
    assert response == sum(got[k].nbytes for k in got if k not in tiny_event)


def test_prometheus_parser_reads_the_servers_metrics(triton) -> None:
    import urllib.request

    with urllib.request.urlopen(_metrics_url(triton), timeout=10) as response:
        text = response.read().decode()
    samples = parse_prometheus(text)
    assert any(name == "nv_inference_queue_duration_us" for name, _, _ in samples)
    counters = per_model_counters(text)
    assert {"clustering_cpu", "pipeline_front_end"} <= set(counters)
    assert scrape(_metrics_url(triton)).keys() == counters.keys()


def test_prometheus_arithmetic_and_labels() -> None:
    text = "\n".join([
        "# HELP nv_inference_request_success Number of successful inference requests",
        "# TYPE nv_inference_request_success counter",
        'nv_inference_request_success{model="a",version="1"} 10',
        'nv_inference_request_success{model="a",version="2"} 10',
        'nv_inference_queue_duration_us{model="a",version="1"} 4000',
        'nv_inference_compute_infer_duration_us{model="a",version="1"} 16000',
        'nv_gpu_utilization{gpu_uuid="x \\"y\\""} 0.5'])
    assert parse_prometheus(text)[-1][1] == {"gpu_uuid": 'x "y"'}
    after = per_model_counters(text)
    assert after["a"]["nv_inference_request_success"] == 20
    (row,) = queue_vs_compute({}, after)
    assert row["queue_ms"] == pytest.approx(0.2)
    assert row["compute_infer_ms"] == pytest.approx(0.8)
    assert row["queue_fraction"] == pytest.approx(0.2)
    assert queue_vs_compute(after, after) == []


def test_comparison_tolerates_float_rounding_only() -> None:
    want = {"x": np.array([1.0, 2.0], np.float32), "i": np.array([1, 2])}
    names, diff = compare_outputs({"x": want["x"] * (1 + 1e-7), "i": want["i"]}, want,
                                  OutputTolerance())
    assert names == ["x"]
    assert diff == []
    names, diff = compare_outputs({"x": want["x"], "i": np.array([1, 3])}, want,
                                  OutputTolerance())
    assert names == ["i"]
    assert diff == ["i: 1 of 2 values differ"]
    with pytest.raises(ValueError, match="rtol"):
        OutputTolerance(rtol=-1)
    with pytest.raises(ValueError, match="options"):
        StudySettings(options=("S3",))
