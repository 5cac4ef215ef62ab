"""Time per stage of the CPU pipeline versus event size (small -> medium -> large).

Run: ``.venv/bin/python benchmarks/cpu_chain_scaling.py [--presets small medium large] [--events 2]
[--prefault-gib G]``. Writes ``benchmarks/results/cpu_chain_scaling.json``: per preset the mean
event sizes and each stage's median time per event (first event run once untimed first), and per
stage the log-log slope of time against measurements (1 = linear) fitted over the presets. Physics
rates are recorded beside the times so a speed-up that costs efficiency shows, and the seeding's
work counters (``taas.seeding.find_seeds(stats=...)``, mean per event, recomputed on the saved
space points) beside its time, so that its growth with density shows as counts too.
``--prefault-gib`` touches that much fresh memory first (``prefault_memory``: on this project's
lazily backed VMs a first touch costs 2.5 s per GiB and would land in the large preset's times).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scaling_runs import end_record, preset_parser, simulated, start_record

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.events.dataset import open_dataset
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import load_reco, reconstruct
from taas.pipeline.spec import CPU
from taas.pipeline.timings import loglog_slopes, median_stage_seconds, read_timings
from taas.seeding import find_seeds
from taas.seeding.shapes import spacepoint_shapes


def seeding_counters(reco: Path, event_ids: list[int], detector: Detector) -> dict[str, float]:
    """Mean per event of the seeding work counters, on the space points ``reco`` saved, with
    the cluster shapes the seeding stage reads."""
    counts = []
    for event_id in event_ids:
        stats: dict[str, int] = {}
        tensors = load_reco(reco, event_id)
        spacepoints = Spacepoints.from_tensors(tensors)
        shapes = spacepoint_shapes(detector, Measurements.from_tensors(tensors), spacepoints)
        find_seeds(spacepoints, stats=stats, shapes=shapes)
        counts.append(stats)
    return {k: float(np.mean([c[k] for c in counts])) for k in counts[0]}


def bench(name: str, events: int, work: Path) -> dict:
    sim = simulated(name, events, work)
    t0 = time.perf_counter()
    reconstruct(sim, work / f"{name}-reco", CPU, progress=False, warmup=True)
    wall = time.perf_counter() - t0
    run = json.loads((work / f"{name}-reco" / "run.json").read_text())
    sizes = list(run["sizes"].values())
    summary = evaluate_run(sim, work / f"{name}-reco", work / f"{name}-metrics")
    return {
        "preset": name, "events": events,
        "mean_sizes": {k: float(np.mean([s[k] for s in sizes])) for k in sizes[0]},
        "stage_s_per_event": median_stage_seconds(read_timings(work / f"{name}-reco")),
        "wall_s_incl_warmup": wall,
        "seeding_counters": seeding_counters(work / f"{name}-reco",
                                             [int(e) for e in run["sizes"]],
                                             open_dataset(sim).detector),
        "metrics": {k: summary[k] for k in ("efficiency", "fake_rate", "duplicate_rate")},
    }


def main() -> None:
    args = preset_parser(__doc__.splitlines()[0], "cpu_chain_scaling").parse_args()
    record = start_record(args.prefault_gib)
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for name in args.presets:
            results.append(bench(name, args.events, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    out = {**end_record(record), "results": results,
           "loglog_slope_vs_measurements": loglog_slopes(
               [r["mean_sizes"]["measurements"] for r in results],
               [r["stage_s_per_event"] for r in results]) if len(results) > 1 else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["loglog_slope_vs_measurements"], indent=2))


if __name__ == "__main__":
    main()
