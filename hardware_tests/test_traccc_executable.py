"""Real traccc on taas' events: a traccc example run on exported events, beside taas' ``cpu``.

Skips unless a traccc example executable is on PATH (traccc has no Python package: build it,
e.g. ``cmake -DTRACCC_BUILD_CUDA=ON`` and put its ``bin`` on PATH). The events are the session's
``tiny`` simulation, exported by ``traccc_bridge.export``; the example runs on them with the
TrackML geometry and taas' digitization file. Checked: it exits cleanly and reads every
exported cell (its log counts them). Recorded beside taas' ``cpu`` pipeline on the same events
(printed and written to ``$TAAS_TRACCC_RESULT`` when set, JSON): both wall times and, when the
example reports them (``--check-performance``), its efficiency lines; no timed assertions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_sim_dir  # noqa: F401  (session fixture, re-exported)

#: traccc's example executables (``traccc_add_executable`` prefixes ``traccc_``), best first.
EXECUTABLES = ("traccc_seq_example_cuda", "traccc_seq_example", "traccc_seeding_example",
               "traccc_throughput_st_cuda", "traccc_throughput_st")
FOUND = [name for name in EXECUTABLES if shutil.which(name)]
if not FOUND:
    pytest.skip(f"no traccc executable on PATH (looked for {', '.join(EXECUTABLES)}); build "
                "traccc and put its bin directory on PATH", allow_module_level=True)

#: A CSV-geometry run refused by a build that reads detray JSON geometries only.
NEEDS_DETRAY = re.compile(r"detray|json|use-detray-detector", re.IGNORECASE)


def _cell_count(log: str) -> int | None:
    """Cells the example says it read (its wording varies between traccc versions)."""
    counts = [int(n) for n in re.findall(r"(\d+)\s+cells", log, re.IGNORECASE)]
    counts += [int(n) for n in re.findall(r"cells\D{0,20}?(\d+)", log, re.IGNORECASE)]
    return max(counts) if counts else None


@pytest.mark.parametrize("executable", FOUND)
def test_traccc_runs_on_exported_events(executable: str, tiny_sim_dir: Path,  # noqa: F811
                                        tmp_path: Path) -> None:
    from taas.events.dataset import open_dataset
    from taas.pipeline.evaluation import evaluate_run
    from taas.pipeline.reconstruct import reconstruct
    from taas.pipeline.spec import CPU
    from traccc_bridge.export import export_events

    export = export_events(tiny_sim_dir, tmp_path / "traccc_data")
    dataset = open_dataset(tiny_sim_dir)
    n_cells = sum(len(dataset.read(e).cells) for e in dataset.event_ids)

    cmd = export.command(executable, "--check-performance")
    env = {**os.environ, **export.environment()}
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, check=False)
    traccc_s = time.perf_counter() - t0
    log = run.stdout + run.stderr
    if run.returncode != 0 and NEEDS_DETRAY.search(log):
        pytest.skip(f"{executable} refuses the TrackML CSV geometry (this traccc build reads "
                    f"detray JSON geometries only): {log[-400:]}")
    assert run.returncode == 0, f"{' '.join(cmd)} failed ({run.returncode}):\n{log[-2000:]}"
    read = _cell_count(log)
    assert read == n_cells, f"traccc reports {read} cells, {n_cells} exported:\n{log[-2000:]}"

    t0 = time.perf_counter()
    reco = reconstruct(tiny_sim_dir, tmp_path / "taas_reco", CPU, progress=False)
    taas_s = time.perf_counter() - t0
    metrics = evaluate_run(tiny_sim_dir, reco, tmp_path / "taas_metrics")
    result = {
        "executable": executable, "events": len(export.event_ids), "cells": n_cells,
        "traccc_wall_s": traccc_s, "taas_cpu_wall_s": taas_s,
        "traccc_efficiency_lines": [line.strip() for line in log.splitlines()
                                    if "efficiency" in line.lower()],
        "taas_cpu_efficiency": metrics["efficiency"], "taas_cpu_fake_rate": metrics["fake_rate"],
        "note": "wall times include process start and file reading on both sides",
    }
    print(json.dumps(result, indent=2))
    if out := os.environ.get("TAAS_TRACCC_RESULT"):
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
