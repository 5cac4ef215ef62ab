"""Triplet seeding with and without the cluster-shape cut and with ACTS' wider deltaR range: work,
time and seed quality per preset.

Run: ``.venv/bin/python benchmarks/seeding_shapes.py [--presets small medium large] [--events 2]
[--repeat 3] [--prefault-gib G]``. Writes ``benchmarks/results/seeding_shapes.json``. Events are
simulated with seed 11 (as ``cpu_chain_scaling.py``); clustering and space points run once per
event, then ``find_seeds`` runs with each of ``VARIANTS`` in turn, ``--repeat`` times each; the
best time per event is kept (all variants see the same machine state), and the log-log slope
of that time against space points over the presets. Per variant: seeds, the work counters of
``taas.seeding.COUNTER_NAMES``, seed purity (the three space points from one particle) and the
fiducial particles (two_way cuts of ``taas.metrics``: pT >= 1 GeV, |eta| <= 2.5, primary, >= 3
measurements) that have a pure seed.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scaling_runs import end_record, preset_parser, simulated, start_record

from taas.edm import Measurements, Spacepoints
from taas.events.dataset import open_dataset
from taas.gnn.data import build_sample, front_end
from taas.metrics.config import MatchingConfig
from taas.metrics.rates import fiducial_mask
from taas.metrics.truth_link import particle_measurement_counts
from taas.pipeline.timings import loglog_slopes
from taas.seeding import SeedingConfig, find_seeds, warmup
from taas.seeding.shapes import spacepoint_shapes

#: The default seeding, without its cluster-shape cut, and with ACTS' deltaR range (5-270 mm
#: instead of 5-80: doublets may skip a pixel layer).
VARIANTS = {"no_shape_cut": SeedingConfig(cluster_shape_cut=False), "shape_cut": SeedingConfig(),
            "shape_cut_acts_delta_r": SeedingConfig(delta_r_bottom_max=270.0,
                                                    delta_r_top_max=270.0)}


def seed_quality(seeds: np.ndarray, particle: np.ndarray, fiducial_ids: set[int]) -> dict:
    """Purity of (n, 3) seeds and the fiducial particles with at least one pure seed."""
    p = particle[seeds]
    pure = (p[:, 0] == p[:, 1]) & (p[:, 1] == p[:, 2]) & (p[:, 0] != 0)
    return {"purity": float(pure.mean()) if len(pure) else float("nan"),
            "fiducial_seeded": len(set(p[pure, 0].tolist()) & fiducial_ids)}


def bench_event(event, repeat: int) -> dict:
    tensors = front_end(event)
    spacepoints = Spacepoints.from_tensors(tensors)
    shapes = spacepoint_shapes(event.detector, Measurements.from_tensors(tensors), spacepoints)
    sample = build_sample(event, tensors)
    parts = event.particles
    n_meas = particle_measurement_counts(sample.particle, parts.particle_id)
    fiducial = fiducial_mask(parts.pt, parts.eta, parts.primary, n_meas, MatchingConfig())
    fiducial_ids = set(np.asarray(parts.particle_id)[fiducial].tolist())
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    out: dict[str, dict] = {}
    for _ in range(repeat):
        for name, cfg in VARIANTS.items():
            t0 = time.perf_counter()
            seeds = find_seeds(spacepoints, cfg, shapes=shapes)
            times[name].append(time.perf_counter() - t0)
            out[name] = {"seeds": len(seeds),
                         **seed_quality(seeds["spacepoints"], sample.particle, fiducial_ids)}
    for name, cfg in VARIANTS.items():
        stats: dict[str, int] = {}
        find_seeds(spacepoints, cfg, stats=stats, shapes=shapes)
        out[name].update(seconds=min(times[name]), **stats)
    return {"spacepoints": len(spacepoints), "fiducial_particles": len(fiducial_ids), **out}


def bench(name: str, events: int, repeat: int, work: Path) -> dict:
    dataset = open_dataset(simulated(name, events, work))
    per_event = [bench_event(dataset.read(e), repeat) for e in dataset.event_ids]

    def mean(variant: str | None, key: str) -> float:
        return float(np.mean([(ev[variant] if variant else ev)[key] for ev in per_event]))

    summary = {v: {k: mean(v, k) for k in per_event[0][v]} for v in VARIANTS}
    return {"preset": name, "events": events, "spacepoints": mean(None, "spacepoints"),
            "fiducial_particles": mean(None, "fiducial_particles"), "mean": summary,
            "per_event": per_event}


def main() -> None:
    parser = preset_parser(__doc__.splitlines()[0], "seeding_shapes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    record = start_record(args.prefault_gib)
    warmup()  # the kernels' compilation stays out of the first timed event
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for name in args.presets:
            results.append(bench(name, args.events, args.repeat, Path(tmp)))
            r = results[-1]
            print(name, json.dumps({v: {k: round(x, 4) for k, x in r["mean"][v].items()}
                                    for v in VARIANTS}), flush=True)
    out = {**end_record(record), "repeat": args.repeat, "results": results,
           "loglog_slope_vs_spacepoints": loglog_slopes(
               [r["spacepoints"] for r in results],
               [{v: r["mean"][v]["seconds"] for v in VARIANTS} for r in results])
           if len(results) > 1 else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print("log-log slope of the seeding time:", out["loglog_slope_vs_spacepoints"])


if __name__ == "__main__":
    main()
