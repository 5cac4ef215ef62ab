"""The greedy ambiguity solver on the CPU (numba heap) against the torch one (``ambiguity/gpu``).

Run: ``.venv/bin/python benchmarks/ambiguity_solvers.py [--preset medium] [--events 1]
[--repeats 5] [--sim-dir DIR] [--out FILE]``. Writes ``benchmarks/results/ambiguity_solvers.json``.

The input is what the ambiguity stage sees in the ``acorn_traccc`` pipeline: the CKF's tracks
from GNN proto-tracks, on seed-11 events of the preset (``scaling_runs.SEED``). Per event: the
tracks in and out, the tracks the solver removed, whether both solvers keep the same tracks
(they must), and the median seconds of the whole stage per solver over ``--repeats``
interleaved passes after one untimed pass (numba's cache load, torch's first calls), with the
device the torch solver ran on: CUDA when torch sees it, else torch's CPU device, where one
removal per step costs a dozen small tensor operations and the heap is expected to win.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scaling_runs import SEED, interleaved_stage_seconds, simulated

from backends.cpu.ambiguity import CpuAmbiguityResolution
from backends.gpu.ambiguity import GpuAmbiguityResolution
from taas.events.dataset import open_dataset
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN_TRACCC, PipelineSpec
from taas.reco.hit_spacepoints import event_inputs
from taas.stages.base import Stage

RESULTS = Path(__file__).resolve().parent / "results"


def up_to_ckf() -> PipelineSpec:
    """acorn_traccc's steps before the ambiguity stage, its GNN on CUDA when torch sees it."""
    spec = ACORN_TRACCC.with_accel("gpu" if torch.cuda.is_available() else "cpu")
    steps = tuple(step for step in spec.steps if step[0] not in ("ambiguity", "track_fit"))
    kept = {stage for stage, _ in steps}
    return PipelineSpec("acorn_traccc_to_ckf", steps, stage_configs={
        k: v for k, v in spec.stage_configs.items() if k in kept})


def compare(tracks: dict[str, np.ndarray], cpu: Stage, gpu: Stage,
            repeats: int) -> dict[str, Any]:
    """Both solvers on one event's CKF tracks: counts, agreement, median seconds."""
    outputs, seconds = interleaved_stage_seconds({"cpu": cpu, "gpu": gpu}, tracks, repeats)
    cpu_out, gpu_out = outputs["cpu"], outputs["gpu"]
    n_in = len(tracks["tracks.meas_offsets"]) - 1
    n_out = len(cpu_out["prototracks.offsets"]) - 1
    same = all(np.array_equal(cpu_out[k], gpu_out[k]) for k in cpu_out)
    return {"tracks_in": n_in, "tracks_out": n_out, "same_tracks": same,
            "median_seconds": seconds,
            "gpu_transfers": gpu.transfers}  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sim-dir", type=Path, help="seed-11 simulations, one dir per preset")
    parser.add_argument("--out", type=Path, default=RESULTS / "ambiguity_solvers.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        dataset = open_dataset(simulated(args.preset, args.events, Path(work), args.sim_dir))
        detector = dataset.detector
        front = Pipeline(up_to_ckf(), detector)
        cpu, gpu = CpuAmbiguityResolution(detector), GpuAmbiguityResolution(detector)
        events = []
        for event_id in dataset.event_ids[:args.events]:
            event = dataset.read(event_id)
            pool = front.run(event_inputs(event)).tensors
            tracks = {k: v for k, v in pool.items() if k.startswith("tracks.")}
            row = compare(tracks, cpu, gpu, args.repeats)
            events.append({"event_id": int(event_id), **event.sizes(), **row})
            print(f"event {event_id}: {row['tracks_in']} -> {row['tracks_out']} tracks, same "
                  f"{row['same_tracks']}, cpu {row['median_seconds']['cpu'] * 1e3:.1f} ms, "
                  f"{gpu.device} {row['median_seconds']['gpu'] * 1e3:.1f} ms", flush=True)
    result = {"benchmark": "ambiguity_solvers", "preset": args.preset, "seed": SEED,
              "repeats": args.repeats, "machine": platform.node(),
              "torch_threads": torch.get_num_threads(), "gpu_solver_device": gpu.device,
              "events": events}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
