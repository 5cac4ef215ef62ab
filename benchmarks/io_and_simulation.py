"""Simulation time per event and event reading time (ACTS CSV vs parquet) per preset.

Run: ``.venv/bin/python benchmarks/io_and_simulation.py --presets tiny small medium large``.
Writes ``benchmarks/results/io_and_simulation.json``. Each preset is simulated once into a
temporary directory, converted to parquet, and both layouts are read back ``--repeat`` times in
alternation (so the CSV/parquet ratio is taken under the same machine load). Event sizes are
recorded beside every time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from taas.events.acts_csv import read_acts_event
from taas.events.dataset import open_dataset
from taas.events.event import read_event_parquet, write_event_parquet
from taas.events.presets import PRESETS
from taas.events.simulation import simulate


def bench_preset(name: str, events: int, repeat: int, work: Path) -> dict:
    preset = PRESETS[name]
    sim_dir, pq_dir = work / name, work / f"{name}-parquet"
    t0 = time.perf_counter()
    simulate(sim_dir, events=events, vertices=preset.vertices,
             particles_per_vertex=preset.particles_per_vertex, seed=7,
             pt_range=(preset.pt_min, preset.pt_max), eta_max=preset.eta_max, progress=False)
    sim_s = (time.perf_counter() - t0) / events
    ds = open_dataset(sim_dir)
    det = ds.detector
    sizes = []
    for event in ds:
        write_event_parquet(event, pq_dir)
        sizes.append(event.sizes())
    csv_t, pq_t = [], []
    for _ in range(repeat):
        for event_id in ds.event_ids:
            t0 = time.perf_counter()
            read_acts_event(sim_dir, event_id, det)
            t1 = time.perf_counter()
            read_event_parquet(pq_dir, event_id, det)
            t2 = time.perf_counter()
            csv_t.append(t1 - t0)
            pq_t.append(t2 - t1)
    return {
        "preset": name,
        "events": events,
        "mean_sizes": {k: float(np.mean([s[k] for s in sizes])) for k in sizes[0]},
        "simulate_s_per_event": sim_s,
        "read_csv_s_per_event_median": float(np.median(csv_t)),
        "read_parquet_s_per_event_median": float(np.median(pq_t)),
        "csv_over_parquet": float(np.median(csv_t) / np.median(pq_t)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "medium"],
                        choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "io_and_simulation.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            r = bench_preset(name, args.events, args.repeat, Path(tmp))
            print(json.dumps(r))
            results.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cpu_count": os.cpu_count(),
                                    "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
