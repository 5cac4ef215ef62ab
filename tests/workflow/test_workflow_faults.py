"""Faults of a workflow run: a run killed part way and run again loses no event and counts none
twice; a malformed event file in the middle of a dataset stops its job with a message naming the
file and leaves no partial output.

Both rest on the reconstruction job writing its per-event outputs into a staging directory that
becomes the job's output only when every event is done (``taas.io.atomic.atomic_directory``).
The kill is a real Snakemake run on tiny events (cpu pipeline only), killed with its whole
process group as a crashed node or an evicted batch job would be: no handler runs, so Snakemake
cleans up nothing itself.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taas.workflow.cli import main as workflow_cli

REPO = Path(__file__).resolve().parents[2]
CPU_STEPS = "clustering/cpu,spacepoints/cpu,seeding/cpu,ckf/cpu,ambiguity/cpu,track_fit/cpu"
#: Events in the killed run: enough that several are still to do when the first output appears.
KILL_EVENTS = 6


def copy_events(source: Path, target: Path, n_events: int) -> Path:
    """``n_events`` ACTS-CSV events in ``target``: the source's events repeated under new ids
    (each with its own truth), with the source's detector and material."""
    target.mkdir(parents=True)
    stems = sorted({p.name.split("-")[0] for p in source.glob("event*-cells.csv")})
    for event_id in range(n_events):
        stem = stems[event_id % len(stems)]
        for path in source.glob(f"{stem}-*.csv"):
            shutil.copy(path, target / path.name.replace(stem, f"event{event_id:09d}"))
    for name in ("detector.parquet", "material.parquet"):
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target


def reco_ids(directory: Path) -> list[int]:
    return sorted(int(p.name[5:14]) for p in directory.glob("event*-reco.npz"))


def test_malformed_event_stops_the_job_naming_the_file_without_partial_output(
        tmp_path: Path, tiny_sim_dir: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch):
    import taas.pipeline.reconstruct as reconstruct_module

    written: list[Path] = []
    real_write = reconstruct_module.atomic_write

    def recording_write(path: Path, write: Callable[[Path], object]) -> None:
        written.append(path)
        real_write(path, write)

    monkeypatch.setattr(reconstruct_module, "atomic_write", recording_write)
    events = copy_events(tiny_sim_dir, tmp_path / "events", 3)
    bad = events / "event000000001-cells.csv"
    lines = bad.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("channel0")] = "not-a-number"
    lines[5] = ",".join(row)
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "reco"
    # clustering alone: the first event is reconstructed (and written) before the bad one
    code = workflow_cli(["reconstruct", "--events", str(events), "--pipeline", "cpu",
                         "--steps", "clustering/cpu", "--out", str(out)])
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(str(bad) in message and "row 4" in message for message in errors), errors
    assert [p.name for p in written] == ["event000000000-reco.npz"]  # one event was done
    assert not out.exists()  # ... and is gone with the failed job
    assert list(tmp_path.glob(".reco*")) == []  # nor a staging directory left behind

    # the same job on a good dataset writes every event
    shutil.copy(tiny_sim_dir / "event000000001-cells.csv", bad)
    assert workflow_cli(["reconstruct", "--events", str(events), "--pipeline", "cpu",
                         "--steps", "clustering/cpu", "--out", str(out)]) == 0
    assert reco_ids(out) == [0, 1, 2]


def _snakemake(workdir: Path, config: list[str], *extra: str) -> subprocess.Popen[bytes]:
    """Snakemake on the repository's workflow in its own working directory (its own lock and
    metadata) and its own process group; its output goes to ``workdir/snakemake.log``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(REPO / "workflow" / "config" / "config.yaml"),
           "--cores", "2", *extra, "--config", *config]
    with (workdir / "snakemake.log").open("wb") as log:
        return subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(process: subprocess.Popen[bytes], workdir: Path) -> str:
    process.wait(timeout=600)
    out = (workdir / "snakemake.log").read_text()
    assert process.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_killed_run_reruns_with_no_event_lost_or_counted_twice(tmp_path: Path,
                                                               tiny_sim_dir: Path):
    events = copy_events(tiny_sim_dir, tmp_path / "tinyfault", KILL_EVENTS)
    results = tmp_path / "results"
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = [f"events_path={events}", "pipelines=[cpu]", "accel=cpu", "mode=direct",
              f"results={results}"]
    metrics = results / "metrics" / "tinyfault" / "cpu" / "metrics.json"
    reco = results / "reco" / "tinyfault" / "cpu"

    run = _snakemake(workdir, config, str(metrics))
    try:
        deadline = time.monotonic() + 600
        while not list(reco.parent.glob(".cpu.tmp*/event*-reco.npz")):
            assert run.poll() is None, (workdir / "snakemake.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no reconstruction output appeared"
            time.sleep(0.02)
    finally:  # the whole process group at once: Snakemake and its running job die together
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    staged = list(reco.parent.glob(".cpu.tmp*"))
    assert len(staged) == 1
    assert 1 <= len(reco_ids(staged[0])) < KILL_EVENTS  # killed part way ...
    assert not reco.exists()  # ... and nothing partial where Snakemake and evaluation look
    assert not metrics.exists()

    # a crashed Snakemake leaves its lock: --unlock, as its message says, then run again
    _finish(_snakemake(workdir, config, "--unlock"), workdir)
    log = _finish(_snakemake(workdir, config, str(metrics)), workdir)
    assert "rule reconstruct:" in log

    assert list(reco.parent.glob(".cpu.tmp*")) == []  # the killed job's leftovers are gone
    assert reco_ids(reco) == list(range(KILL_EVENTS))
    with (reco / "timings.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    per_event: dict[int, int] = {}
    for row in rows:
        per_event[int(row["event_id"])] = per_event.get(int(row["event_id"]), 0) + 1
    assert per_event == dict.fromkeys(range(KILL_EVENTS), len(CPU_STEPS.split(",")))
    run_info = json.loads((reco / "run.json").read_text())
    assert sorted(int(k) for k in run_info["sizes"]) == list(range(KILL_EVENTS))
    assert json.loads(metrics.read_text())["n_events"] == KILL_EVENTS
