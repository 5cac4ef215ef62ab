"""Workflow configuration: command-line strings coerced, bad values refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taas.workflow.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid():
    config = yaml.safe_load((REPO / "workflow/config/config.yaml").read_text())
    out = validate_config(config)
    assert out["pipelines"] == ["cpu"]
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
    ],
)
def test_bad_values_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)


def test_dry_run_shows_the_plan(tmp_path):
    result = _snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}/r",
                        "preset=tiny", "n_events=1")
    assert result.returncode == 0, result.stderr
    for rule in ("simulate", "events_to_parquet", "event_info", "reconstruct", "evaluate",
                 "summary"):
        assert rule in result.stdout


def test_bad_override_stops_the_workflow(tmp_path):
    result = _snakemake("-n", "--cores", "1", "--config", "preset=huge",
                        f"results={tmp_path}/r")
    assert result.returncode != 0
    assert "preset: 'huge' is not one of" in result.stdout + result.stderr
