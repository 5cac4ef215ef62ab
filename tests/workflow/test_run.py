"""Real Snakemake runs of the whole workflow on one tiny simulated event (accel=cpu), with three
of the four default pipelines: cpu, acorn_traccc and fpga (the last in C simulation). acorn's
stages all run inside acorn_traccc (same GNN stages, models and service options), so the fourth
adds time, not coverage; ``test_models_rule.py`` runs acorn alone through the workflow.

One direct run (events -> model repositories -> reconstruct -> evaluate -> served vs direct and a
throughput sweep on a real tritonserver -> report), then the same results directory again with
mode=served for two pipelines: only reconstruction and what follows it rerun. Numbers are not
asserted (a loaded 2-core box is no benchmark), only that the report holds every required
section.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taas.report.sections import TITLES

REPO = Path(__file__).resolve().parents[2]
PIPELINES = ["cpu", "acorn_traccc", "fpga"]
TINY = (f"pipelines=[{','.join(PIPELINES)}]", "preset=tiny", "n_events=1", "seed=3",
        "accel=cpu", "instances=1", "concurrency=[1,2]", "requests=4", "compare_repeats=1")
#: nested keys cannot go through --config (Snakemake passes their items as strings)
TINY_CONFIG_FILE = "service_options: {concurrency: [1, 2], requests: 2}\n"


def _snakemake(results: Path, *extra: str) -> subprocess.CompletedProcess:
    config_file = results.parent / f"{results.name}-tiny.yaml"
    config_file.write_text(TINY_CONFIG_FILE)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(config_file),
           "--config", *TINY, f"results={results}", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)


def _ok(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("wf") / "results"
    _ok(_snakemake(results, "mode=direct"))
    return results


def test_tiny_workflow_end_to_end(direct_run: Path):
    results = direct_run
    metrics = json.loads((results / "metrics" / "tiny" / "cpu" / "metrics.json").read_text())
    for key in ("efficiency", "fake_rate", "duplicate_rate", "n_tracks", "n_fiducial_particles"):
        assert key in metrics
    assert metrics["matching"]["style"] == "two_way"
    assert metrics["n_fiducial_particles"] > 10
    assert metrics["efficiency"] > 0.8
    assert (results / "metrics" / "tiny" / "cpu" / "efficiency_vs_pt.png").is_file()

    summary = json.loads((results / "summary" / "tiny.json").read_text())
    assert [s["pipeline"] for s in summary] == PIPELINES
    stages = [(s["stage"], s["device"]) for s in summary[0]["stages"]]
    assert stages[0] == ("clustering", "cpu")
    assert {s for s, _ in stages} == {"clustering", "spacepoints", "seeding", "ckf",
                                      "ambiguity", "track_fit"}
    text = (results / "summary" / "tiny.md").read_text()
    assert "| cpu | ckf | cpu | cpu |" in text


def test_report_has_every_section(direct_run: Path):
    report = direct_run / "report"
    data = json.loads((report / "report.json").read_text())
    assert [p["pipeline"] for p in data["pipelines"]] == PIPELINES
    for entry in data["pipelines"]:
        assert entry["mode"] == "direct"
        assert entry["events_per_s"] > 0
        assert set(entry["latency_ms"]) >= {"p50", "p95", "p99"}
        assert entry["served_vs_direct"]["outputs_identical"]
        assert entry["served_vs_direct"]["ratio"] > 0
    gnn = data["pipelines"][1]
    assert gnn["models"]["source"] == "shipped"
    assert gnn["stage_configs"]["graph_construction"]["checkpoint_dir"].endswith("checkpoints")
    assert {p["concurrency"] for p in data["throughput"]} == {1, 2}
    assert {p["pipeline"] for p in data["throughput"]} == set(PIPELINES)
    assert {p["concurrency"] for p in data["throughput"] if p["pipeline"] == "fpga"} == {1}
    fpga = data["pipelines"][2]
    assert {s["ran_on"].split(" (")[0] for s in fpga["stages"][:4]} == {"fpga"}
    capacity = {r["pipeline"]: r for r in data["capacity"]["rows"]}
    assert capacity["cpu"]["device"] == "CPU core"
    assert capacity["cpu"]["devices_full_scan"] > 0
    assert capacity["fpga"]["device"] is None
    assert "emulation" in capacity["fpga"]["reason"]
    assert data["fpga_model"]["label"].startswith("MODELLED")
    assert all(p["errors"] == 0 and p["throughput"] > 0 for p in data["throughput"])
    assert set(data["events"]["mean_sizes"]) >= {"cells", "measurements", "spacepoints"}
    assert data["versions"]["tritonserver"] != "unknown"
    assert data["config"]["accel"] == "cpu"
    studies = {s["pipeline"]: s for s in data["service_options"]["pipelines"]}
    assert list(studies) == PIPELINES
    assert [r["key"] for r in studies["cpu"]["options"]] == ["S0", "S3", "S4", "custom"]
    assert [r["key"] for r in studies["acorn_traccc"]["options"]] == [
        "S0", "S1", "S2", "S3", "S4", "custom"]
    assert {s["key"] for s in studies["fpga"]["skipped"]} == {"S1", "S2"}
    assert all(r["outputs_equal"] for s in studies.values() for r in s["options"])
    assert {p["concurrency"] for r in studies["acorn_traccc"]["options"]
            for p in r["throughput"]} == {1, 2}
    assert studies["acorn_traccc"]["prometheus"]["rows"]
    md = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    for title in (*TITLES, "FPGA hardware model (modelled, not measured)"):
        assert f"## {title}" in md
        assert f">{title}</h2>" in page
    assert page.count("data:image/png;base64,") == 7
    assert "src=\"http" not in page
    assert "<script" not in page
    for name in ("stage_breakdown", "throughput_vs_concurrency", "throughput_vs_instances",
                 "efficiency_vs_pt", "efficiency_vs_eta", "service_options_overhead",
                 "service_options_throughput"):
        assert (report / "plots" / f"{name}.png").stat().st_size > 5000


def test_rerun_is_incremental_and_snakemake_report_works(direct_run: Path):
    again = _snakemake(direct_run, "mode=direct", "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    _ok(_snakemake(direct_run, "mode=direct", "--report", str(direct_run / "sm-report.html")))
    assert (direct_run / "sm-report.html").stat().st_size > 100_000


#: Served per-stage chains of the classical and the GNN + CKF pipeline: between them every stage
#: kind but the FPGA emulation's (its served stage models: tests/service/test_every_model.py).
SERVED = ("cpu", "acorn_traccc")


@pytest.mark.triton
def test_served_mode_reruns_only_reconstruction(direct_run: Path):
    served = (f"pipelines=[{','.join(SERVED)}]", "mode=served")
    plan = _snakemake(direct_run, *served, "-n")
    assert plan.returncode == 0
    out = plan.stdout
    assert "rule reconstruct:" in out
    assert "rule report:" in out
    assert "rule throughput:" not in out
    assert "rule served_vs_direct:" not in out
    _ok(_snakemake(direct_run, *served))
    data = json.loads((direct_run / "report" / "report.json").read_text())
    assert [p["pipeline"] for p in data["pipelines"]] == list(SERVED)
    assert {p["mode"] for p in data["pipelines"]} == {"served"}
    devices = {s["stage"]: s["device"] for s in data["pipelines"][1]["stages"]}
    assert devices["edge_classification"] == "cpu"  # reported by the served model itself
    reco = json.loads((direct_run / "reco" / "tiny" / "cpu" / "run.json").read_text())
    assert reco["mode"] == "served"
    metrics = json.loads((direct_run / "metrics" / "tiny" / "cpu" / "metrics.json").read_text())
    assert metrics["efficiency"] > 0.8
