"""The Slurm and Kubernetes profiles plan the real workflow (dry runs through the executor
plugins from PyPI), and ``replicas`` reaches the jobs that start servers.

A dry run loads the profile's executor plugin and its settings, and for Kubernetes the storage
plugin its pods need (they share no file system); submitting needs a scheduler or a kube config,
which CI has not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ("preset=tiny", "n_events=1", "accel=cpu", "replicas=2")


def _dry_run(profile: str, results: Path) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--profile",
           str(REPO / "workflow" / "profiles" / profile), "--config", *TINY,
           f"results={results}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


@pytest.mark.parametrize("profile", ["slurm", "kubernetes"])
def test_profile_plans_the_workflow(profile: str, tmp_path: Path) -> None:
    out = _dry_run(profile, tmp_path / "results")
    assert f"Using profile {REPO / 'workflow' / 'profiles' / profile}" in out
    assert "This was a dry-run" in out
    for rule in ("reconstruct", "served_vs_direct", "throughput", "report"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    # every job that starts its own servers starts two behind the load balancer
    served = [line for line in out.splitlines()
              if line.startswith("Shell command:") and "taas.workflow.cli" in line
              and (" compare " in line or " throughput " in line)]
    assert served
    assert all("--replicas 2" in line for line in served)
    if profile == "kubernetes":  # outputs go to the storage the pods share
        assert "/data/taas/" in out
        assert "(in storage)" in out
