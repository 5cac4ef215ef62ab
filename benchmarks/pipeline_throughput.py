"""Events per second of a pipeline run by N worker processes at once, as Triton runs N
instances of the whole-pipeline model (each Python-backend instance is its own process).

Run: ``.venv/bin/python benchmarks/pipeline_throughput.py [--pipeline acorn_traccc]
[--accel gpu] [--preset large] [--events 2] [--instances 1 2] [--passes 3]
[--supplementary-threads 1] [--front-end auto] [--sim-dir DIR] [--out FILE]``.
Writes ``benchmarks/results/pipeline_throughput_<pipeline>_<accel>_<preset>.json``.

Why: the ``acorn_traccc`` target is its events/s on ``large`` events with 1 and 2 model
instances on one GPU. A GPU machine may have no ``tritonserver`` (it has no network to fetch
one), so this measures what the served model runs -- ``Pipeline.run`` asked for the tracks
only, with device residency -- without the server: each worker process builds the pipeline,
runs every event once untimed (models, kernels and caches warm), waits at a barrier, then
runs ``--passes`` passes over the events. Throughput = all workers' events / the wall time
from the barrier to the last worker's end. ``benchmarks/instance_scaling.py`` measures the
same through a real tritonserver where one exists. The workers share the GPU (and the host's
cores: ``torch_threads`` each); the device each stage ran on is recorded (``devices``): on a
machine without CUDA the gpu stages run on torch's CPU device, a correctness run, no GPU
figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from scaling_runs import FRONT_ENDS, RESULTS, SEED, simulated, with_front_end, write_result

from taas.edm.tracks import Tracks
from taas.events.dataset import open_dataset
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.reco.hit_spacepoints import event_inputs


def _worker(spec: PipelineSpec, dataset_dir: str, n_events: int, passes: int,
            torch_threads: int, start: Any, results: Any) -> None:
    """One instance: warm up on every event, meet the others at ``start``, run the passes;
    put (events, seconds from the barrier, per-event seconds, devices) on ``results``."""
    torch.set_num_threads(torch_threads)
    dataset = open_dataset(dataset_dir)
    events = [event_inputs(dataset.read(i)) for i in dataset.event_ids[:n_events]]
    pipeline = Pipeline(spec, dataset.detector)
    tracks = [s.name for s in Tracks.tensor_specs()]
    result = None
    for inputs in events:
        result = pipeline.run(inputs, outputs=tracks)
    devices = {t.stage: t.device for t in result.timings} if result else {}
    start.wait()
    began = time.perf_counter()
    latencies = []
    for _ in range(passes):
        for inputs in events:
            t0 = time.perf_counter()
            pipeline.run(inputs, outputs=tracks)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            latencies.append(time.perf_counter() - t0)
    results.put((len(latencies), time.perf_counter() - began, latencies, devices))


def measure(spec: PipelineSpec, dataset_dir: Path, n_events: int, instances: int,
            passes: int, torch_threads: int) -> dict[str, Any]:
    """``instances`` workers at once; events/s over all of them, per-event latencies."""
    context = mp.get_context("spawn")  # CUDA cannot be forked
    start, results = context.Barrier(instances), context.Queue()
    workers = [context.Process(target=_worker, args=(spec, str(dataset_dir), n_events, passes,
                                                     torch_threads, start, results))
               for _ in range(instances)]
    for worker in workers:
        worker.start()
    done = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit(f"a worker failed (exit code {worker.exitcode})")
    events = sum(d[0] for d in done)
    seconds = max(d[1] for d in done)
    latencies = [s for d in done for s in d[2]]
    return {"instances": instances, "events": events, "seconds": seconds,
            "events_per_s": events / seconds,
            "latency_s": {"median": statistics.median(latencies), "max": max(latencies)},
            "devices": done[0][3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="acorn_traccc", choices=sorted(PIPELINES))
    parser.add_argument("--accel", default="gpu", help="backend of the accelerator stages")
    parser.add_argument("--preset", default="large")
    parser.add_argument("--events", type=int, default=2, help="events each worker cycles")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the events")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--supplementary-threads", type=int, default=1,
                        help="the bridge's supplementary seeding threads (acorn_traccc)")
    parser.add_argument("--front-end", choices=FRONT_ENDS, default="auto",
                        help="clustering and space points: gpu (OpenCL), cpu, or auto (gpu "
                             "where an OpenCL GPU is registered)")
    parser.add_argument("--sim-dir", type=Path, help="seed-11 simulations, one dir per preset")
    parser.add_argument("--out", default=None, help=f"file name under {RESULTS}")
    args = parser.parse_args()
    if min(args.instances) < 1 or args.events < 1 or args.passes < 1:
        parser.error("--instances, --events and --passes must be >= 1")
    spec = PIPELINES[args.pipeline]
    if spec.accel_stages:
        spec = spec.with_accel(args.accel)
    if args.accel == "gpu" and "clustering" in spec.accel_stages:
        spec = with_front_end(spec, args.front_end)
    spec = spec.with_configs(
        {"prototrack_seeding": {"supplementary_threads": args.supplementary_threads}})
    points = []
    with tempfile.TemporaryDirectory() as work:
        dataset_dir = simulated(args.preset, args.events, Path(work), args.sim_dir)
        dataset = open_dataset(dataset_dir)
        sizes = dataset.read(dataset.event_ids[0]).sizes()
        for n in args.instances:
            point = measure(spec, dataset_dir, args.events, n, args.passes, args.torch_threads)
            points.append(point)
            print(f"{args.pipeline} accel={args.accel} {args.preset}: {n} instance(s) "
                  f"{point['events_per_s']:.2f} events/s (median latency "
                  f"{point['latency_s']['median']:.2f} s)", flush=True)
    base = points[0]["events_per_s"]
    for point in points:
        point["speed_up_over_first"] = point["events_per_s"] / base
    write_result({"benchmark": "pipeline_throughput", "pipeline": args.pipeline,
                  "accel": args.accel, "preset": args.preset, "seed": SEED,
                  "events_per_worker": args.events, "passes": args.passes,
                  "first_event_sizes": sizes, "torch_threads": args.torch_threads,
                  "supplementary_threads": args.supplementary_threads,
                  "routing": dict(spec.steps),
                  "machine": platform.node(), "processor": platform.processor(),
                  "cuda_device": torch.cuda.get_device_name(0)
                  if torch.cuda.is_available() else None, "points": points},
                 args.out or f"pipeline_throughput_{args.pipeline}_{args.accel}_"
                             f"{args.preset}.json")


if __name__ == "__main__":
    main()
