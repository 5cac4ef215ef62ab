"""What the preset-scaling benchmarks share: their events and the record of the machine's state.

``cpu_chain_scaling.py``, ``gnn_scaling.py`` and ``seeding_shapes.py`` time the same seed-11
events of each preset, so their figures can be set side by side, and each records how loaded
this shared machine was and how much memory it pre-touched (``--prefault-gib``), because both
move the timings. Imported by those scripts as a sibling module (benchmarks are scripts, run as
``python benchmarks/NAME.py``), and by the others for their seed-11 events and ``write_result``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taas.events.presets import PRESETS
from taas.events.simulation import check_simulated, simulate
from taas.pipeline.spec import PipelineSpec
from taas.pipeline.timings import loglog_slopes, median_stage_seconds, prefault_memory, read_timings

#: Simulation seed of every scaling benchmark's events.
SEED = 11
#: Where benchmarks write their records.
RESULTS = Path(__file__).resolve().parent / "results"


def simulated(name: str, events: int, work: Path, sim_dir: Path | None = None) -> Path:
    """The preset's events: ``sim_dir/name`` when given (checked: seed 11, at least ``events``,
    all of which are used), else ``events`` simulated now into ``work/name``."""
    preset = PRESETS[name]
    if sim_dir is None:
        return simulate(work / name, events=events, vertices=preset.vertices,
                        particles_per_vertex=preset.particles_per_vertex, seed=SEED,
                        progress=False)
    try:
        return check_simulated(sim_dir / name, {"seed": SEED, "vertices": preset.vertices,
                                                "particles_per_vertex":
                                                    preset.particles_per_vertex},
                               min_events=events)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


#: ``--front-end`` choices of the benchmarks that run acorn_traccc on the accelerator.
FRONT_ENDS = ("auto", "gpu", "cpu")


def with_front_end(spec: PipelineSpec, front_end: str) -> PipelineSpec:
    """``spec`` with clustering and space points on ``front_end``: ``gpu`` (OpenCL), ``cpu``,
    or ``auto``: gpu where an OpenCL GPU is registered, else cpu (a CUDA machine without
    NVIDIA's OpenCL driver would run the OpenCL kernels on PoCL, on its CPU)."""
    if front_end == "auto":
        from taas.workflow.devices import opencl_devices

        front_end = "gpu" if opencl_devices()[0] else "cpu"
    return spec.with_routing({"clustering": front_end, "spacepoints": front_end})


def preset_parser(description: str, result_name: str) -> argparse.ArgumentParser:
    """Options of a benchmark that times every preset on the same number of events:
    ``--presets``, ``--events``, ``--prefault-gib`` and ``--out`` (default
    ``benchmarks/results/<result_name>.json``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--presets", nargs="+", default=["small", "medium", "large"],
                        choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=2)
    add_prefault_argument(parser)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / f"{result_name}.json")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_passes_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passes", type=_positive_int, default=1,
                        help="reconstruct every preset this many times, the presets taking "
                             "turns (interleaved_passes; median over all)")


def add_prefault_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefault-gib", type=float, default=0.0,
                        help="touch this much fresh memory before timing (lazily backed VMs: "
                             "taas.pipeline.timings.prefault_memory)")


def start_record(prefault_gib: float) -> dict[str, Any]:
    """Pre-touch ``prefault_gib`` GiB, then note the machine and its load before timing."""
    prefault_s = prefault_memory(prefault_gib)
    return {"machine": platform.platform(), "cpu_count": os.cpu_count(),
            "prefault_gib": prefault_gib, "prefault_s": prefault_s,
            "load_average_start": list(os.getloadavg())}


def end_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the load average after timing."""
    return {**record, "load_average_end": list(os.getloadavg())}


#: Per preset: every timing row, each pass's median stage seconds, wall seconds of all passes.
PassTimings = tuple[dict[str, list[dict]], dict[str, list[dict[str, float]]], dict[str, float]]


def interleaved_passes(names: Sequence[str], passes: int,
                       reconstruct_pass: Callable[[str, int], Path]) -> PassTimings:
    """Reconstruct every preset ``passes`` times, the presets taking turns within each pass
    (small, medium, large, small, ...), so that a slow spell of this shared machine lands in
    every preset instead of in one. ``reconstruct_pass(name, i)`` runs pass ``i`` of preset
    ``name`` and returns its output directory. Returns per preset: every timing row, each
    pass's median stage seconds, and the wall seconds of all its passes."""
    rows: dict[str, list[dict]] = {name: [] for name in names}
    per_pass: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    wall = dict.fromkeys(names, 0.0)
    for i in range(passes):
        for name in names:
            t0 = time.perf_counter()
            timings = read_timings(reconstruct_pass(name, i))
            wall[name] += time.perf_counter() - t0
            rows[name] += timings
            per_pass[name].append(median_stage_seconds(timings))
            print(name, f"pass {i + 1}/{passes}", json.dumps(per_pass[name][-1]), flush=True)
    return rows, per_pass, wall


def timing_record(reco: Path, rows: list[dict], per_pass: list[dict[str, float]],
                  wall: float) -> dict[str, Any]:
    """A preset's sizes and times from ``interleaved_passes``: events and passes, mean event
    sizes (the first pass's ``run.json``), each stage's median seconds over events and passes
    and per pass, and the wall seconds of all passes."""
    sizes = list(json.loads((reco / "run.json").read_text())["sizes"].values())
    return {"events": len(sizes), "passes": len(per_pass),
            "mean_sizes": {k: float(np.mean([s[k] for s in sizes])) for k in sizes[0]},
            "stage_s_per_event": median_stage_seconds(rows),
            "stage_s_per_event_by_pass": per_pass,
            "wall_s_incl_warmup": wall}


def slopes(sizes: Sequence[float], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Log-log slopes of the presets' stage times against ``sizes``: of the medians over events
    and passes (``stage_s_per_event``) and of each pass on its own
    (``stage_s_per_event_by_pass``: the spread is the measurement's noise); None for a single
    preset."""
    if len(results) < 2:
        return {"median": None, "per_pass": None}
    n_passes = len(results[0]["stage_s_per_event_by_pass"])
    return {"median": loglog_slopes(sizes, [r["stage_s_per_event"] for r in results]),
            "per_pass": [loglog_slopes(sizes, [r["stage_s_per_event_by_pass"][i] for r in results])
                         for i in range(n_passes)]}


def write_result(result: dict[str, Any], name: str) -> Path:
    """A benchmark's record as indented JSON to ``results/<name>``; says where."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return path


def interleaved_stage_seconds(stages: dict[str, Any], inputs: dict[str, np.ndarray],
                              repeats: int) -> tuple[dict[str, dict[str, np.ndarray]],
                                                     dict[str, float]]:
    """Each stage's outputs on ``inputs`` and its median seconds over ``repeats`` passes after
    one untimed pass (caches, CUDA context), the stages' order alternating pass by pass so that
    the machine's load falls on all of them alike (CUDA synchronised around each call)."""
    import torch

    def timed(stage: Any) -> tuple[dict[str, np.ndarray], float]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = stage.run(inputs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    outputs = {name: timed(stage)[0] for name, stage in stages.items()}
    seconds: dict[str, list[float]] = {name: [] for name in stages}
    names = list(stages)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds[name].append(timed(stages[name])[1])
    return outputs, {name: float(np.median(s)) for name, s in seconds.items()}

