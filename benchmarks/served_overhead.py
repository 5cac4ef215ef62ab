"""Served vs direct time per event, per pipeline, on the same events in one run.

Run: ``.venv/bin/python benchmarks/served_overhead.py [--pipelines cpu acorn] [--preset medium]
[--events 2] [--repeats 4]``. Per pipeline (accelerator stages on the cpu backend, shipped
models): one repository with the whole-pipeline model, one real tritonserver, and
``taas.workflow.measure.served_vs_direct``, which alternates direct and served event by event
so that machine noise hits both alike, and checks the outputs are identical. Writes
``benchmarks/results/served_overhead.json`` with the ratio served / direct per pipeline, the
event sizes and the machine load.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from service_options import served_pipeline

from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.pipeline.spec import PIPELINES
from taas.workflow.measure import served_vs_direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", nargs="+", default=["cpu", "acorn"],
                        choices=sorted(PIPELINES))
    parser.add_argument("--preset", default="medium", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4, help="passes over the events")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "served_overhead.json")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = simulate(work / "events", events=args.events, vertices=preset.vertices,
                          particles_per_vertex=preset.particles_per_vertex, seed=31,
                          progress=False)
        for name in args.pipelines:
            with served_pipeline(name, Path(events), work, stage_models=False) as (spec, server):
                results[name] = served_vs_direct(events, spec, server.url,
                                                 repeats=args.repeats)
            print(f"{name}: served / direct = {results[name]['ratio']:.3f} "
                  f"({results[name]['direct_s_per_event']:.3f} vs "
                  f"{results[name]['served_s_per_event']:.3f} s/event), outputs identical: "
                  f"{results[name]['outputs_identical']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "served_overhead", "preset": args.preset,
                                    "events": args.events, "repeats": args.repeats,
                                    "machine": platform.platform(), "results": results},
                                   indent=2))


if __name__ == "__main__":
    main()
