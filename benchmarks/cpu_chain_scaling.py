"""Time per stage of the CPU pipeline versus event size (small -> medium -> large).

Run: ``.venv/bin/python benchmarks/cpu_chain_scaling.py [--presets small medium large] [--events 2]
[--passes N] [--prefault-gib G] [--stage-configs FILE]``. Writes
``benchmarks/results/cpu_chain_scaling.json`` (``--out`` elsewhere): per
preset the mean event sizes and each stage's median time per event over events and passes (first
event run once untimed first), and per stage the log-log slope of time against measurements
(1 = linear) fitted over the presets. ``--passes N`` reconstructs every preset N times, the
presets taking turns (small, medium, large, small, ...), so that a slow spell of this shared
machine lands in every preset rather than in one; the slope of each pass on its own is recorded
too (``loglog_slope_per_pass``), its spread being the measurement's noise. Physics
rates are recorded beside the times so a speed-up that costs efficiency shows, and the seeding's
work counters (``taas.seeding.find_seeds(stats=...)``, mean per event, recomputed on the saved
space points) beside its time, so that its growth with density shows as counts too.
``--prefault-gib`` touches that much fresh memory first (``prefault_memory``: on this project's
lazily backed VMs a first touch costs 2.5 s per GiB and would land in the large preset's times).
``--stage-configs`` overrides stage configs as ``taas reconstruct`` does (a JSON file
``{stage: {field: value}}``, e.g. ``benchmarks/configs/event_filter_seeding.json``), recorded in
the output.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from scaling_runs import (
    add_passes_argument,
    end_record,
    interleaved_passes,
    preset_parser,
    simulated,
    slopes,
    start_record,
    timing_record,
)

from backends.cpu.seeding import CpuSeeding
from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.events.dataset import open_dataset
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import load_reco, reconstruct
from taas.pipeline.spec import CPU, PipelineSpec
from taas.seeding import SeedingConfig, find_seeds
from taas.seeding.shapes import spacepoint_shapes
from taas.stages.configs import build_config, read_stage_configs


def seeding_counters(reco: Path, event_ids: list[int], detector: Detector,
                     config: SeedingConfig) -> dict[str, float]:
    """Mean per event of the seeding work counters, on the space points ``reco`` saved, with
    the cluster shapes and the config the seeding stage used."""
    counts = []
    for event_id in event_ids:
        stats: dict[str, int] = {}
        tensors = load_reco(reco, event_id)
        spacepoints = Spacepoints.from_tensors(tensors)
        shapes = spacepoint_shapes(detector, Measurements.from_tensors(tensors), spacepoints)
        find_seeds(spacepoints, config, stats=stats, shapes=shapes)
        counts.append(stats)
    return {k: float(np.mean([c[k] for c in counts])) for k in counts[0]}


def summary(name: str, sim: Path, reco: Path, work: Path, rows: list[dict],
            per_pass: list[dict[str, float]], wall: float, seeding: SeedingConfig) -> dict:
    """One preset's record: sizes and stage times (``timing_record``), seeding work counters
    and the physics rates of the first pass's tracks."""
    dataset = open_dataset(sim)
    metrics = evaluate_run(sim, reco, work / f"{name}-metrics")
    return {
        "preset": name, **timing_record(reco, rows, per_pass, wall),
        "seeding_counters": seeding_counters(reco, list(dataset.event_ids), dataset.detector,
                                             seeding),
        "metrics": {k: metrics[k] for k in ("efficiency", "fake_rate", "duplicate_rate")},
    }


def bench(names: list[str], events: int, passes: int, work: Path,
          spec: PipelineSpec = CPU) -> list[dict]:
    """Every preset ``passes`` times, the presets taking turns within each pass."""
    sims = {name: simulated(name, events, work) for name in names}
    rows, per_pass, wall = interleaved_passes(
        names, passes, lambda name, i: reconstruct(sims[name], work / f"{name}-reco{i or ''}",
                                                   spec, progress=False, warmup=i == 0))
    seeding = build_config(CpuSeeding, spec.stage_configs.get("seeding", {}))
    return [summary(name, sims[name], work / f"{name}-reco", work, rows[name], per_pass[name],
                    wall[name], seeding) for name in names]


def main() -> None:
    parser = preset_parser(__doc__.splitlines()[0], "cpu_chain_scaling")
    add_passes_argument(parser)
    parser.add_argument("--stage-configs", type=Path,
                        help="JSON {stage: {field: value}} over the CPU pipeline's stage configs")
    args = parser.parse_args()
    spec = CPU.with_configs(read_stage_configs(args.stage_configs))
    record = start_record(args.prefault_gib)
    with tempfile.TemporaryDirectory() as tmp:
        results = bench(args.presets, args.events, args.passes, Path(tmp), spec)
    fitted = slopes([r["mean_sizes"]["measurements"] for r in results], results)
    out = {**end_record(record), "stage_configs": spec.stage_configs, "results": results,
           "loglog_slope_vs_measurements": fitted["median"],
           "loglog_slope_per_pass": fitted["per_pass"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["loglog_slope_vs_measurements"], indent=2))


if __name__ == "__main__":
    main()
