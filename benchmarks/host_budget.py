"""What stays on the host when ``acorn_traccc`` runs on the accelerator, timed per event: the
ceiling those steps put on a model instance's events/s, whatever the GPU.

Run: ``.venv/bin/python benchmarks/host_budget.py [--presets medium large] [--events 1 1]
[--repeats 2] [--supplementary-threads 1 2] [--front-end auto] [--sim-dir DIR]
[--out FILE]``.
Writes ``benchmarks/results/host_budget.json``.

Why: with accel=gpu every stage of ``acorn_traccc`` has an accelerator backend (the front
end OpenCL -- PoCL here, a GPU's OpenCL there; its space points reach torch through the
host, which ``opencl_torch_handover.json`` measures -- the rest torch), but some steps inside
them run on the host by design (listed in the stages' docstrings): the walk of branched
components in track building (numba, as ACORN's walkthrough runs on the CPU), the bridge's
layer lookup and supplementary triplet seeding of the whole event (taas' CPU seeding), the
CKF's seed checks and batch choice (ACTS' one-seed-at-a-time order), the fit's ordering along
the track, helix estimate, field lookup and measurement errors, and every stage's input
checks, module lookups and local -> global transforms; a stage routed to the cpu backend
counts whole. While they run, one model instance's GPU waits; so the sum of their times per
event bounds the events/s of one instance (``ceiling_events_per_s_one_instance``) however
fast the device is, and k instances (Triton runs each in its own process) at best k times
that while k host cores are free. That bound is modelled from host times measured here, not
a GPU figure.

What: the seed-11 events of each preset (``scaling_runs.SEED``) run through ``acorn_traccc``
with accel=gpu (torch on CUDA when present, else torch's CPU device, said in ``devices``),
one untimed pass, then ``--repeats`` passes. Each host step is timed
by wrapping the function that does it (``HOST_STEPS``; the fit's host side whole, less its
filter and smoother, ``DEVICE_WORK``), so the figures are those functions' wall times in the
pipeline on this machine; a step inside another counts for the outer one
(``host_step_seconds`` add up), and every step's own time is in ``step_inclusive_seconds``.
Recorded per event and per variant of the supplementary seeding's host threads
(``--supplementary-threads``; variants interleaved pass by pass; their seeds are identical,
so only that step's time moves): each step's median seconds, the host stages' median
seconds, their sum, the ceilings (as run; without the supplementary seeding, which a GNN
holding at density would make unnecessary), and each stage's median seconds (on torch's CPU
device and PoCL no GPU figure).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from scaling_runs import FRONT_ENDS, RESULTS, SEED, simulated, with_front_end, write_result

from taas.edm.tracks import Tracks
from taas.events.dataset import open_dataset
from taas.pipeline.runner import Pipeline, PipelineResult
from taas.pipeline.spec import ACORN_TRACCC
from taas.reco.hit_spacepoints import event_inputs

#: Host step -> (module, function or Class.method) doing it; each is looked up in its module's
#: namespace (or on its class) when called, so replacing the attribute times every call. A
#: step called inside another counts for the outer one (its own time goes to the breakdown).
HOST_STEPS: dict[str, tuple[str, str]] = {
    "track_building.walkthrough": ("taas.gnn.track_building", "walk"),
    "bridge.layer_keys": ("traccc_bridge.bridge", "layer_keys"),
    "bridge.supplementary_seeding": ("traccc_bridge.bridge", "supplementary_seeds"),
    # the bridge's wait for its supplementary seeding when that started early (overlapped)
    "bridge.supplementary_seeding_wait": ("traccc_bridge.stages",
                                          "EarlySupplementarySeeding.supplementary_done"),
    "ckf.measurement_checks": ("taas.tracking.ckf", "check_measurements"),
    "ckf.seed_checks": ("taas.tracking.ckf", "check_seeds"),
    "ckf.seed_batches": ("taas.tracking.ckf", "_select_batch"),
    # the fit whole but for its filter and smoother on the device (DEVICE_WORK): checks,
    # module lookup and positions, ordering, measurement errors, each batch's gathers, the
    # helix estimates and the field
    "fit.host_side": ("taas.tracking.batched.fit", "fit_prototracks"),  # as the gpu fit calls it
    "fit.ordering": ("taas.tracking.fitter", "order_along_tracks"),
    "fit.estimate": ("taas.tracking.fitter", "estimate_parameters"),
    "fit.measurement_errors": ("taas.tracking.fitter", "measurement_variances"),
    # every other stage's lookups in the detector's tables
    "all.module_lookup": ("taas.detector.detector", "Detector.index_of"),
    "all.local_to_global": ("taas.detector.detector", "Detector.local_to_global"),
}

#: Device work called from a host step: its time is taken out of that step's.
DEVICE_WORK: dict[str, tuple[str, str]] = {
    "fit.filter_and_smoother": ("taas.tracking.batched.fit", "kalman_fit_torch"),
}


@dataclass
class StepTimes:
    """``host``: per host step, its calls' wall time less the device work inside them, calls
    made inside another step left out (they count for that one): these add up to the time the
    pipeline's thread spends on the host; ``inclusive``: per step (device work too), every
    call's whole wall time; ``overlapped``: per step, the calls made on other threads (early
    work, ``taas.stages.base.EarlyWork``: the pipeline's thread waits only for what is left of
    them, timed in the step that waits)."""

    host: dict[str, float]
    inclusive: dict[str, float]
    overlapped: dict[str, float]


@contextmanager
def timed_steps(host_steps: dict[str, tuple[str, str]],
                device_work: dict[str, tuple[str, str]] | None = None,
                ) -> Iterator[StepTimes]:
    """Within the block, the calls of the steps' functions are timed into the yielded
    ``StepTimes``; the functions are restored afterwards."""
    device_work = device_work or {}
    times = StepTimes(dict.fromkeys(host_steps, 0.0),
                      dict.fromkeys([*host_steps, *device_work], 0.0),
                      dict.fromkeys(host_steps, 0.0))
    originals: list[tuple[Any, str, Any]] = []
    local = threading.local()

    def timer(name: str, function: Callable[..., Any], on_device: bool) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = local.__dict__.setdefault("stack", [])
            frame = [0.0]  # device seconds inside this call
            stack.append(frame)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                stack.pop()
                times.inclusive[name] += elapsed
                inside = elapsed if on_device else frame[0]
                if stack:
                    stack[-1][0] += inside
                elif not on_device:
                    on_main = threading.current_thread() is threading.main_thread()
                    (times.host if on_main else times.overlapped)[name] += elapsed - inside
        return timed

    try:
        for steps, on_device in ((host_steps, False), (device_work, True)):
            for name, (module_name, path) in steps.items():
                owner: Any = importlib.import_module(module_name)
                *classes, attribute = path.split(".")
                for class_name in classes:
                    owner = getattr(owner, class_name)
                function = owner.__dict__[attribute]  # as defined, not bound
                originals.append((owner, attribute, function))
                setattr(owner, attribute, timer(name, function, on_device))
        yield times
    finally:
        for owner, attribute, function in originals:
            setattr(owner, attribute, function)


def measure(pipelines: dict[int, Pipeline], inputs: dict[str, Any], repeats: int
            ) -> dict[int, dict[str, Any]]:
    """One event through each pipeline (by supplementary seeding threads): median seconds of
    each host step and each stage over ``repeats`` passes after an untimed one, the variants
    interleaved pass by pass (this machine is shared), and the ceilings they imply."""
    tracks = [spec.name for spec in Tracks.tensor_specs()]  # the whole-pipeline model's ask
    per_pass: dict[int, list[StepTimes]] = {}
    stage_passes: dict[int, list[dict[str, float]]] = {}
    results = {}
    for threads, pipeline in pipelines.items():
        pipeline.run(inputs, outputs=tracks)
        per_pass[threads], stage_passes[threads] = [], []
    for _ in range(repeats):
        for threads, pipeline in pipelines.items():
            with timed_steps(HOST_STEPS, DEVICE_WORK) as times:
                results[threads] = pipeline.run(inputs, outputs=tracks)
            per_pass[threads].append(times)
            stage_passes[threads].append({t.stage: t.seconds for t in results[threads].timings})
    return {threads: _budget(per_pass[threads], stage_passes[threads], results[threads])
            for threads in pipelines}


def _budget(per_pass: list[StepTimes], stage_passes: list[dict[str, float]],
            result: PipelineResult) -> dict[str, Any]:
    steps = {name: statistics.median(p.host[name] for p in per_pass) for name in HOST_STEPS}
    inclusive = {name: statistics.median(p.inclusive[name] for p in per_pass)
                 for name in per_pass[0].inclusive}
    stages = {stage: statistics.median(p[stage] for p in stage_passes)
              for stage in stage_passes[0]}
    # stages routed to the host count whole
    on_host = {t.stage: stages[t.stage] for t in result.timings if t.backend == "cpu"}
    in_steps = statistics.median(sum(p.host.values()) for p in per_pass)
    host = in_steps + sum(on_host.values())
    supplementary = (steps["bridge.supplementary_seeding"]
                     + steps["bridge.supplementary_seeding_wait"])
    overlapped = {name: statistics.median(p.overlapped[name] for p in per_pass)
                  for name in HOST_STEPS}
    return {"host_step_seconds": steps, "step_inclusive_seconds": inclusive,
            "overlapped_step_seconds": {k: v for k, v in overlapped.items() if v},
            "host_steps_seconds": in_steps,
            "host_stage_seconds": on_host, "host_seconds": host,
            "ceiling_events_per_s_one_instance": 1.0 / host,
            # what a GNN that holds at density would allow (supplementary_seeding "none")
            "ceiling_events_per_s_one_instance_without_supplementary_seeding":
                1.0 / (host - supplementary),
            "stage_seconds": stages, "devices": {t.stage: t.device for t in result.timings}}


#: What the ceilings are, written into the record.
MODELLED = ("ceilings = 1 / (host seconds per event): one instance's GPU waits while its host "
            "steps run; k instances in k processes at best k times that while k cores are "
            "free. No GPU time enters them. The supplementary seeding runs on another thread "
            "while the stages between the space points and the bridge run "
            "(overlapped_step_seconds); the bridge waits only for what is left of it "
            "(bridge.supplementary_seeding_wait). On torch's CPU device those stages take "
            "seconds, so it never waits here; on a GPU it waits max(0, seeding - their GPU "
            "time), which the ceilings measured here do not contain.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["medium", "large"])
    parser.add_argument("--events", type=int, nargs="+", default=[1, 1])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--supplementary-threads", type=int, nargs="+", default=[1, 2],
                        help="host threads of the bridge's supplementary seeding, each a "
                             "variant (TracccSeedingConfig.supplementary_threads)")
    parser.add_argument("--front-end", choices=FRONT_ENDS, default="auto",
                        help="clustering and space points: gpu (OpenCL), cpu, or auto (gpu "
                             "where an OpenCL GPU is registered)")
    parser.add_argument("--sim-dir", type=Path, help="seed-11 simulations, one dir per preset")
    parser.add_argument("--out", default="host_budget.json", help=f"file name under {RESULTS}")
    args = parser.parse_args()
    if len(args.events) != len(args.presets):
        parser.error("--events needs one count per preset")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    spec = with_front_end(ACORN_TRACCC.with_accel("gpu"), args.front_end)
    presets: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as work:
        for preset, n_events in zip(args.presets, args.events, strict=True):
            dataset = open_dataset(simulated(preset, n_events, Path(work), args.sim_dir))
            pipelines = {n: Pipeline(spec.with_configs(
                {"prototrack_seeding": {"supplementary_threads": n}}), dataset.detector)
                for n in args.supplementary_threads}
            rows = presets.setdefault(preset, [])
            for event_id in dataset.event_ids[:n_events]:
                event = dataset.read(event_id)
                variants = measure(pipelines, event_inputs(event), args.repeats)
                rows.append({"event_id": int(event_id), **event.sizes(),
                             "supplementary_threads": {str(n): v for n, v in variants.items()}})
                for n, row in variants.items():
                    top = max(row["host_step_seconds"].items(), key=lambda kv: kv[1])
                    print(f"{preset} event {event_id}, supplementary seeding on {n} thread(s): "
                          f"host {row['host_seconds']:.3f} s per event (largest {top[0]} "
                          f"{top[1]:.3f} s): ceiling "
                          f"{row['ceiling_events_per_s_one_instance']:.1f} events/s per "
                          f"instance", flush=True)
    write_result({"benchmark": "host_budget", "pipeline": "acorn_traccc", "accel": "gpu",
                  "front_end": dict(spec.steps)["clustering"],
                  "seed": SEED, "repeats": args.repeats, "machine": platform.node(),
                  "processor": platform.processor() or platform.machine(),
                  "torch_threads": torch.get_num_threads(),
                  "modelled": MODELLED,
                  "presets": presets}, args.out)


if __name__ == "__main__":
    main()
