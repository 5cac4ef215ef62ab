"""Workflow configuration: command-line strings coerced, bad values refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taas.pipeline.spec import PIPELINES
from taas.workflow.config import ConfigError, validate_config
from taas.workflow.devices import Devices
from taas.workflow.routing import GPU_ON_CPU_NOTE, PlanError, plan_pipelines, resolve_accel

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid():
    config = yaml.safe_load((REPO / "workflow/config/config.yaml").read_text())
    out = validate_config(config)
    assert out["pipelines"] == ["cpu", "acorn", "acorn_traccc", "fpga"]
    assert out["emulation"]["events"] == 1
    assert out["preset"] == "small"


def test_command_line_strings_are_coerced():
    out = validate_config({"pipelines": "cpu", "pt_min": 2, "events_path": 5})
    assert out["pipelines"] == ["cpu"]
    assert out["pt_min"] == 2.0
    assert isinstance(out["pt_min"], float)
    assert out["events_path"] == "5"
    assert out["n_events"] == 3  # default filled in


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"preset": "huge"}, r"preset: 'huge' is not one of"),
        ({"n_events": 0}, r"n_events: 0 is less than the minimum"),
        ({"pipelines": "cpu,warp"}, r"pipelines.1: 'warp' is not one of"),
        ({"matching": "two-way"}, r"matching"),
        ({"pt_min": -1}, r"pt_min"),
        ({"n_event": 3}, r"unknown configuration key\(s\) \['n_event'\]"),
        ({"n_events": "three"}, r"n_events: 'three' is not of type 'integer'"),
        ({"accel": "tpu"}, r"accel: 'tpu' is not one of \['cpu', 'gpu', 'fpga', 'auto'\]"),
        ({"mode": "remote"}, r"mode: 'remote' is not one of \['direct', 'served'\]"),
        ({"concurrency": 0}, r"concurrency.0: 0 is less than the minimum of 1"),
        ({"concurrency": "[1,0]"}, r"concurrency.1: 0 is less than the minimum of 1"),
        ({"instances": "two"}, r"instances.0: 'two' is not of type 'integer'"),
        ({"allow_cpu_device": "maybe"}, r"allow_cpu_device: 'maybe' is not of type 'boolean'"),
        ({"routing": "clustering"}, r"routing: want stage:backend pairs"),
    ],
)
def test_bad_values_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_new_keys_are_coerced():
    out = validate_config({"routing": "clustering:gpu, spacepoints:gpu", "instances": "[1,2]",
                           "concurrency": "1-4", "allow_cpu_device": "true", "accel": "cpu"})
    assert out["routing"] == {"clustering": "gpu", "spacepoints": "gpu"}
    assert out["instances"] == [1, 2]
    assert out["concurrency"] == [1, 2, 3, 4]
    assert out["allow_cpu_device"] is True
    assert validate_config({"concurrency": 3})["concurrency"] == [3]
    assert validate_config({"routing": {"cpu.ckf": "cpu"}})["routing"] == {"cpu.ckf": "cpu"}


NO_GPU = Devices(cuda=0, opencl_cpu=("pthread-test",))
WITH_GPU = Devices(cuda=1)


def _plan(devices: Devices = NO_GPU, **config):
    return plan_pipelines(validate_config(config), devices=lambda: devices)


def test_default_plan_is_every_landed_pipeline_runnable_without_a_gpu():
    plan = _plan(accel="cpu")
    assert list(plan) == ["cpu", "acorn", "acorn_traccc", "fpga"]
    assert {b for _, b in plan["fpga"].spec.steps} == {"fpga", "cpu"}  # emulated, anywhere
    assert plan["cpu"].spec.steps == PIPELINES["cpu"].steps
    assert plan["cpu"].notes == ()
    auto = _plan(accel="auto")  # no CUDA: the GNN stages go to their cpu backend, no note
    assert auto["cpu"].spec.steps == PIPELINES["cpu"].steps
    assert {b for _, b in auto["acorn"].spec.steps} == {"cpu"}
    assert auto["acorn"].notes == ()
    assert dict(_plan(WITH_GPU, accel="auto")["acorn"].spec.steps)["edge_classification"] == "gpu"


def test_accel_moves_what_has_a_backend_there_and_says_what_stays_on_cpu():
    plan = _plan(pipelines="acorn", accel="fpga")["acorn"]
    steps = dict(plan.spec.steps)
    assert steps["graph_construction"] == steps["edge_classification"] == "fpga"
    assert steps["track_building"] == "cpu"
    assert plan.notes == ("track_building: no fpga backend, runs on cpu",)
    routed = _plan(pipelines="acorn", accel="fpga", routing="track_building:gpu",
                   allow_cpu_device=True)["acorn"]
    assert dict(routed.spec.steps)["track_building"] == "gpu"
    assert not any("no fpga backend" in note for note in routed.notes)


def test_auto_accel_follows_cuda():
    assert resolve_accel("auto", lambda: WITH_GPU) == "gpu"
    assert resolve_accel("auto", lambda: NO_GPU) == "cpu"


def test_routing_overrides_single_stages():
    plan = _plan(routing="clustering:gpu,cpu.spacepoints:gpu", allow_cpu_device=True)
    steps = dict(plan["cpu"].spec.steps)
    assert steps["clustering"] == steps["spacepoints"] == "gpu"
    assert steps["ckf"] == "cpu"
    assert any(GPU_ON_CPU_NOTE in note for note in plan["cpu"].notes)
    assert plan["cpu"].steps_arg.startswith("clustering/gpu,spacepoints/gpu,seeding/cpu")
    assert _plan(WITH_GPU, routing="clustering:gpu")["cpu"].notes == ()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"routing": "seeding:fpga"},
         r"stage 'seeding' on backend 'fpga', which is not implemented.*available: .*"
         r"seeding/cpu"),
        ({"routing": "gnn:gpu"}, r"no selected pipeline has a stage 'gnn'"),
        ({"pipelines": "cpu", "routing": "acorn.gnn:gpu"},
         r"names pipeline 'acorn', which is not selected"),
        ({"routing": "clustering:gpu"},
         r"routes stage 'clustering' to backend 'gpu', but this machine has no GPU.*"
         r"allow_cpu_device=true"),
    ],
)
def test_plans_the_machine_cannot_run_are_refused(config, message):
    with pytest.raises(PlanError, match=message):
        _plan(**config)


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)


def test_dry_run_shows_the_plan(tmp_path):
    result = _snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}/r",
                        "preset=tiny", "n_events=1")
    assert result.returncode == 0, result.stderr
    for rule in ("simulate", "events_to_parquet", "event_info", "models", "model_repository",
                 "reconstruct", "evaluate", "served_vs_direct", "throughput", "summary",
                 "report"):
        assert f"rule {rule}:" in result.stdout, rule


def test_bad_override_stops_the_workflow(tmp_path):
    result = _snakemake("-n", "--cores", "1", "--config", "preset=huge",
                        f"results={tmp_path}/r")
    assert result.returncode != 0
    assert "preset: 'huge' is not one of" in result.stdout + result.stderr


def test_unbuilt_backend_stops_the_workflow_at_start(tmp_path):
    result = _snakemake("-n", "--cores", "1", "--config", "routing=seeding:fpga",
                        f"results={tmp_path}/r")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "stage 'seeding' on backend 'fpga', which is not implemented" in out
    assert "available: ambiguity/cpu" in out
