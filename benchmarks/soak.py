"""Soak: 64 independent clients against one tritonserver for minutes, on loopback.

Run: ``.venv/bin/python benchmarks/soak.py [--pipeline cpu] [--preset small] [--events 4]
[--clients 64] [--seconds 120] [--instances 2]``. One whole-pipeline model (accelerator stages on
the cpu backend, shipped models), one real tritonserver, and ``taas.service.loadgen.run_load``
with one gRPC connection per client, each client sending the events (cycled) back to back.
Writes ``benchmarks/results/soak.json``: requests answered and failed (the target is zero
failed), per-request latency percentiles (p50/p90/p95/p99/max), the server's own queue and
compute time per request, the event sizes and the machine load before and after.

With 64 clients on one model, latency is mostly queueing: about clients / instances times the
compute time per event. That is the point of a soak (does anything time out, drop or leak under
a deep queue?), not a latency figure to quote for one client.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
from pathlib import Path

from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.pipeline.reconstruct import event_sizes
from taas.pipeline.spec import PIPELINES
from taas.service.client import RemotePipeline
from taas.service.loadgen import run_load
from taas.service.model_repo import build_model_repository, pipeline_model_name
from taas.service.server import TritonServer
from taas.workflow.measure import load_events, machine_state
from taas.workflow.models import prepare_models, with_models

log = logging.getLogger("soak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="cpu", choices=sorted(PIPELINES))
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120.0, help="soak duration")
    parser.add_argument("--instances", type=int, default=2, help="model instances")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="per-request deadline; a request past it counts as failed")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "soak.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset = PRESETS[args.preset]
    spec = PIPELINES[args.pipeline].with_accel("cpu")
    model = pipeline_model_name(spec.name)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = Path(simulate(work / "events", events=args.events, vertices=preset.vertices,
                               particles_per_vertex=preset.particles_per_vertex, seed=37,
                               progress=False))
        prepare_models(spec, "shipped", work / "models")
        spec = with_models(spec, work / "models")
        repo = build_model_repository(work / "repo", detector_path=events / "detector.parquet",
                                      stages=[], pipelines=[spec], ensembles=False,
                                      instances=args.instances)
        _, tensors = load_events(events)
        with TritonServer(repo, log_path=work / "tritonserver.log") as server:
            served = RemotePipeline(spec.name, server.url)
            try:  # the sizes every figure needs, from the served pipeline's own outputs
                sizes = [event_sizes(served.run(t).tensors) for t in tensors]
            finally:
                served.close()
            before = machine_state()
            report = run_load(server.url, model, tensors, concurrency=args.clients,
                              clients=args.clients, max_requests=10**9,
                              max_seconds=args.seconds, timeout_s=args.timeout)
            after = machine_state()
    log.info("%s", report.summary())
    result = {
        "benchmark": "soak", "pipeline": spec.name, "model": model,
        "steps": [list(s) for s in spec.steps], "preset": args.preset,
        "events": args.events, "event_sizes": sizes, "clients": args.clients,
        "instances": args.instances, "duration_s": args.seconds,
        "request_timeout_s": args.timeout, "transport": "gRPC on loopback (no shared memory)",
        "requests": report.requests, "failed_requests": report.errors,
        "server_counted_requests": report.server_requests,
        "first_error": report.first_error, "events_per_s": report.throughput,
        "latency_ms": report.latency_ms, "server_ms_per_request": report.server_ms,
        "machine_before": before, "machine_after": after, "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(report.summary())


if __name__ == "__main__":
    main()
