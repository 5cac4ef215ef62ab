"""Throughput of a served pipeline against Triton model instances and requests in flight.

Run: ``.venv/bin/python benchmarks/instance_scaling.py [--pipeline cpu] [--preset small]
[--events 4] [--instances 1 2] [--concurrency 1 2 4] [--requests 24]``. For each instance
count one repository (the whole-pipeline model, ``instance_group count`` = N) and one real
tritonserver; the load generator then sends the same events at each concurrency. Writes
``benchmarks/results/instance_scaling_<pipeline>.json``: events/s and latency percentiles per
(instances, concurrency), the event sizes, the machine load before and after each server, and
the speed-up of every point over (1 instance, concurrency 1) of the same run.

Each Python-backend instance is its own process, so N instances can use N cores while the
stages themselves stay single-threaded (numba kernels are serial by design); the client, the
server front end and the instances share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.pipeline.spec import PIPELINES
from taas.service.model_repo import build_model_repository
from taas.service.server import TritonServer
from taas.workflow.measure import machine_state, throughput
from taas.workflow.models import prepare_models, with_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="cpu", choices=sorted(PIPELINES))
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=24, help="requests per point")
    parser.add_argument("--seconds", type=float, default=120.0, help="time limit per point")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/instance_scaling_<pipeline>.json")
    args = parser.parse_args()
    args.out = args.out or (Path(__file__).parent / "results"
                            / f"instance_scaling_{args.pipeline}.json")
    preset = PRESETS[args.preset]
    spec = PIPELINES[args.pipeline]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = simulate(work / "events", events=args.events, vertices=preset.vertices,
                          particles_per_vertex=preset.particles_per_vertex, seed=21,
                          progress=False)
        prepare_models(spec, "shipped", work / "models")
        spec = with_models(spec, work / "models")
        for n in args.instances:
            repo = build_model_repository(work / f"repo-i{n}", detector_path=Path(events)
                                          / "detector.parquet", stages=[], pipelines=[spec],
                                          instances=n, ensembles=False)
            with TritonServer(repo, log_path=work / f"server-i{n}.log") as server:
                runs.append(throughput(events, spec, server.url, instances=n,
                                       concurrency=args.concurrency, requests=args.requests,
                                       max_seconds=args.seconds))
    base = next(p["throughput"] for r in runs for p in r["points"]
                if r["instances"] == min(args.instances) and p["concurrency"] == 1)
    table = [{"instances": r["instances"], "concurrency": p["concurrency"],
              "events_per_s": p["throughput"], "latency_ms": p["latency_ms"],
              "speedup": p["throughput"] / base if base else None}
             for r in runs for p in r["points"]]
    result = {"benchmark": "instance_scaling", "pipeline": args.pipeline,
              "preset": args.preset, "events": args.events,
              "mean_cells": runs[0]["mean_cells"], "requests_per_point": args.requests,
              "machine": platform.platform(), "final_state": machine_state(),
              "table": table, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for row in table:
        print(f"instances {row['instances']} concurrency {row['concurrency']}: "
              f"{row['events_per_s']:.2f} events/s (x{row['speedup']:.2f}), "
              f"p50 {row['latency_ms']['p50']:.0f} ms")


if __name__ == "__main__":
    main()
