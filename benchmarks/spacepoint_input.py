"""Reconstruction from space points without cells: the positions-only GNN models and the cpu chain.

Run: ``.venv/bin/python benchmarks/spacepoint_input.py [--events 1] [--trackml DIR]``. Writes
``benchmarks/results/spacepoint_input.json``. Inputs, each once with its cells and once without
(``taas.gnn.positions.drop_cells``: the same directory less its cells files, so the pipelines
start from the hits' space points, ``taas.reco.hit_spacepoints``):

* ``simulated_small``: ``--events`` ``small`` events simulated with seed 11 (no training set
  uses it; the positions-only models trained on seeds 101/102);
* ``trackml``: the real TrackML sample (``../shared/data/trackml``), when present.

Pipelines: ``acorn`` (with cells: the shipped cell-feature models; without: the positions-only
models, picked by ``taas.pipeline.reconstruct``), ``acorn_traccc`` without cells, and ``cpu``
(its seeding's cluster-shape cut has no cluster sizes without cells and keeps every doublet:
``taas.seeding.shapes``), plus ``cpu`` on the cells with the cut switched off, to separate the
cut's share from that of the space points' positions. Per run: the two_way efficiency, fake and
duplicate rates with their binomial (Clopper-Pearson, 68.3%) errors, fiducial particles, tracks,
seeds, the stages that ran and were skipped, the GNN models, the event sizes and the median
seconds per stage (one pass on a shared two-core machine: indicative only). No target: the issue
asks for the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from scaling_runs import end_record, simulated, start_record

from taas.gnn.positions import drop_cells
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.spec import PipelineSpec, get_pipeline
from taas.pipeline.timings import median_stage_seconds, read_timings

TRACKML_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "trackml"

#: The runs per input: name -> (pipeline, with cells?, stage config overrides).
RUNS: dict[str, tuple[str, bool, dict[str, dict[str, Any]]]] = {
    "acorn_cells": ("acorn", True, {}),
    "acorn_spacepoints": ("acorn", False, {}),
    "acorn_traccc_spacepoints": ("acorn_traccc", False, {}),
    "cpu_cells": ("cpu", True, {}),
    "cpu_cells_no_shape_cut": ("cpu", True, {"seeding": {"cluster_shape_cut": False}}),
    "cpu_spacepoints": ("cpu", False, {}),
}

RATES = ("efficiency", "fake_rate", "duplicate_rate")


def run_one(events: Path, spec: PipelineSpec, out: Path) -> dict[str, Any]:
    """Reconstruct and evaluate ``events`` with ``spec``; the figures this benchmark keeps."""
    t0 = time.perf_counter()
    reconstruct(events, out, spec, progress=False)
    seconds = time.perf_counter() - t0
    summary = evaluate_run(events, out, out / "eval")
    run = json.loads((out / "run.json").read_text())
    rates = {f"{r}{s}": summary[f"{r}{s}"] for r in RATES for s in ("", "_err_low", "_err_high")}
    return {
        **rates, "fiducial_particles": summary["n_fiducial_particles"],
        "reconstructed_particles": summary["n_reconstructed_particles"],
        "tracks": summary["n_tracks"], "input": run["input"],
        "stages_run": [s for s, _ in spec.steps if s not in run["skipped_stages"]],
        "skipped_stages": run["skipped_stages"], "gnn_models": run["gnn_models"],
        "sizes": run["sizes"], "stage_seconds": median_stage_seconds(read_timings(out)),
        "wall_seconds": seconds,
    }


def bench_input(name: str, events: Path, work: Path) -> dict[str, Any]:
    """Every run of ``RUNS`` on ``events`` (with cells) and on its copy without cells."""
    without = drop_cells(events, work / f"{name}_spacepoints")
    out: dict[str, Any] = {}
    for run, (pipeline, cells, overrides) in RUNS.items():
        spec = get_pipeline(pipeline).with_configs(overrides)
        out[run] = run_one(events if cells else without, spec, work / f"{name}_{run}")
        logging.info("%s %s: efficiency %.4f fake %.4f", name, run, out[run]["efficiency"],
                     out[run]["fake_rate"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1, help="small events (seed 11)")
    parser.add_argument("--trackml", type=Path, default=TRACKML_DIR,
                        help="TrackML sample directory (skipped when absent)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results"
                        / "spacepoint_input.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = start_record(0.0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = {"simulated_small": simulated("small", args.events, work)}
        if (args.trackml / "detectors.csv.gz").is_file():
            inputs["trackml"] = args.trackml
        else:
            logging.warning("no TrackML sample at %s: simulated events only", args.trackml)
        results = {name: bench_input(name, path, work) for name, path in inputs.items()}
    record = end_record(record)
    payload = {
        "what": "reconstruction from space points without cells (positions-only GNN models; "
                "cpu chain without cluster shapes) against the same events with cells",
        "inputs": {"simulated_small": f"{args.events} small event(s), seed 11",
                   "trackml": "real TrackML sample event 1 (../shared/data/trackml)"},
        "rates": "two_way matching, fiducial pT >= 1 GeV, |eta| <= 2.5, primary; errors: "
                 "Clopper-Pearson 68.3% intervals",
        "results": results, **record,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(json.dumps({name: {run: {k: r[k] for k in ("efficiency", "fake_rate", "tracks")}
                             for run, r in res.items()} for name, res in results.items()},
                     indent=1))


if __name__ == "__main__":
    main()
