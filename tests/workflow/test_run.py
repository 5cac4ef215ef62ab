"""A real Snakemake run of the whole workflow on one tiny simulated event (accel=cpu)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tiny_workflow_end_to_end(tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "preset=tiny",
           "n_events=1", "seed=3", f"results={results}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    metrics = json.loads((results / "metrics" / "tiny" / "cpu" / "metrics.json").read_text())
    for key in ("efficiency", "fake_rate", "duplicate_rate", "n_tracks", "n_fiducial_particles"):
        assert key in metrics
    assert metrics["matching"]["style"] == "two_way"
    assert metrics["n_fiducial_particles"] > 10
    assert metrics["efficiency"] > 0.8
    assert (results / "metrics" / "tiny" / "cpu" / "efficiency_vs_pt.png").is_file()

    summary = json.loads((results / "summary" / "tiny.json").read_text())
    assert [s["pipeline"] for s in summary] == ["cpu"]
    stages = [(s["stage"], s["device"]) for s in summary[0]["stages"]]
    assert stages[0] == ("clustering", "cpu")
    assert {s for s, _ in stages} == {"clustering", "spacepoints", "seeding", "ckf",
                                      "ambiguity", "track_fit"}
    text = (results / "summary" / "tiny.md").read_text()
    assert "| cpu | ckf | cpu | cpu |" in text

    # a rerun has nothing to do: outputs are incremental
    again = subprocess.run([*cmd, "-n"], cwd=REPO, capture_output=True, text=True, check=False)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
