"""The GNN -> CKF bridge (``acorn_traccc``) against ``cpu`` and ``acorn`` on the same events.

Run: ``.venv/bin/python benchmarks/acorn_traccc.py [--presets medium large] [--events 2 1]
[--repeats 3] [--sim-dir DIR] [--out FILE]``. Writes ``benchmarks/results/acorn_traccc.json``:
per preset the mean event sizes, and per pipeline variant the two_way efficiency (pT > 1 GeV),
fake and duplicate rates over all events (``taas.metrics``, with their 68% intervals), the
median seconds per event of every stage, the device each ran on, and the back-end sum the
targets compare: ``cpu``'s ckf + ambiguity + track_fit against ``acorn_traccc``'s
prototrack_seeding + prototrack_ckf + ambiguity + track_fit (medians over events and
``--repeats`` passes).

Variants: ``cpu``; ``acorn`` (its shipped settings); ``acorn_traccc`` in both CKF modes
(``constrained``, ``free``) times both seeding methods (``triplet``, ``fit``), and with the
other choices of supplementary triplet seeding (``none``, ``uncovered``, ``all``); with
``--gpu-ckf`` (the default when torch sees CUDA) also the default one with its CKF on the gpu
backend (``acorn_traccc/free/triplet/ckf=gpu``: the whole CKF in torch),
whose host <-> device copies of the last event are recorded (``transfers``). All variants
share one front end and one GNN pass per event (the GNN stages are deterministic and
identical in ``acorn`` and ``acorn_traccc``; only track building's settings differ, so it is
rerun and timed per variant), and the back ends run interleaved, event by event, so that they
see the same machine load, after one untimed pass over the first event. Events are simulated
with seed 11 (``scaling_runs.SEED``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from scaling_runs import SEED, simulated

from taas.events.dataset import open_dataset
from taas.metrics.evaluate import evaluate_event, evaluate_events
from taas.metrics.truth_link import measurement_particles
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, ACORN_TRACCC, CPU, PipelineSpec
from traccc_bridge.config import SUPPLEMENTARY_SEEDING, TracccSeedingConfig

FRONT_END = ("clustering", "spacepoints")
GNN = ("graph_construction", "edge_classification")
#: the back end whose time the targets compare, per pipeline
BACK_END = {"cpu": ("ckf", "ambiguity", "track_fit"),
            "acorn_traccc": ("prototrack_seeding", "prototrack_ckf", "ambiguity", "track_fit")}


def variants(gpu_ckf: bool = False) -> dict[str, PipelineSpec]:
    """Every pipeline variant compared, by name: both CKF modes times both seeding methods,
    and the default ones with the other supplementary seedings (and the gpu CKF)."""
    out = {"cpu": CPU, "acorn": ACORN}
    for mode in ("constrained", "free"):
        for method in ("triplet", "fit"):
            out[f"acorn_traccc/{mode}/{method}"] = ACORN_TRACCC.with_configs(
                {"prototrack_ckf": {"mode": mode}, "prototrack_seeding": {"method": method}})
    default = TracccSeedingConfig().supplementary_seeding
    for choice in SUPPLEMENTARY_SEEDING:
        if choice != default:
            out[f"acorn_traccc/free/triplet/supplementary={choice}"] = ACORN_TRACCC.with_configs(
                {"prototrack_ckf": {"mode": "free"},
                 "prototrack_seeding": {"method": "triplet", "supplementary_seeding": choice}})
    if gpu_ckf:
        out["acorn_traccc/free/triplet/ckf=gpu"] = ACORN_TRACCC.with_routing(
            {"prototrack_ckf": "gpu"})
    return out


def shared_prefix(spec: PipelineSpec) -> int:
    """How many leading steps of ``spec`` the shared front end (+ GNN) already ran."""
    shared = FRONT_END + (GNN if spec.name != "cpu" else ())
    return sum(1 for stage, _ in spec.steps if stage in shared)


def run_preset(name: str, n_events: int, work: Path, sim_dir: Path | None,
               repeats: int, gpu_ckf: bool = False) -> dict:
    sim = simulated(name, n_events, work, sim_dir)
    ds = open_dataset(sim)
    specs = variants(gpu_ckf)
    pipelines = {k: Pipeline(spec, ds.detector) for k, spec in specs.items()}
    shared = Pipeline(ACORN, ds.detector)
    n_shared = len(FRONT_END) + len(GNN)
    per_event: dict[str, list] = {k: [] for k in specs}
    times: dict[str, dict[str, list[float]]] = {k: {} for k in specs}
    devices: dict[str, dict[str, str]] = {k: {} for k in specs}
    transfers: dict[str, dict[str, dict[str, int]]] = {k: {} for k in specs}
    sizes = []
    warm = True
    for event_id in ds.event_ids:
        event = ds.read(event_id)
        pool = event.cells.to_tensors()
        for stage in shared.stages[:n_shared]:
            t0 = time.perf_counter()
            pool.update(stage.run({s.name: pool[s.name] for s in stage.INPUTS
                                   if s.name in pool}))
            for k, spec in specs.items():
                if stage.NAME in [s for s, _ in spec.steps]:
                    times[k].setdefault(stage.NAME, []).append(time.perf_counter() - t0)
                    devices[k][stage.NAME] = stage.device
        sizes.append({"cells": len(pool["cells.ch0"]),
                      "measurements": len(pool["measurements.local_u"]),
                      "spacepoints": len(pool["spacepoints.x"]),
                      "graph_edges": len(pool["edges.src"])})
        particle_of = measurement_particles(event.cells["hit_id"], pool["clusters.cluster_id"],
                                            len(pool["measurements.local_u"]), event.hits)
        if warm:  # first event once untimed: numba caches and first-call costs stay out
            for k, pipeline in pipelines.items():
                tensors = dict(pool)
                for stage in pipeline.stages[shared_prefix(specs[k]):]:
                    tensors.update(stage.run({s.name: tensors[s.name] for s in stage.INPUTS
                                              if s.name in tensors}))
            warm = False
        for repeat in range(repeats):
            for k, pipeline in pipelines.items():
                tensors = dict(pool)
                for stage in pipeline.stages[shared_prefix(specs[k]):]:
                    t0 = time.perf_counter()
                    tensors.update(stage.run({s.name: tensors[s.name] for s in stage.INPUTS
                                              if s.name in tensors}))
                    times[k].setdefault(stage.NAME, []).append(time.perf_counter() - t0)
                    devices[k][stage.NAME] = stage.device
                    if hasattr(stage, "transfers"):
                        transfers[k][stage.NAME] = dict(stage.transfers)
                if repeat == 0:
                    per_event[k].append(evaluate_event(
                        tensors["tracks.meas_offsets"], tensors["tracks.meas_indices"],
                        particle_of, event.particles, event_id=event_id))
                print(f"{name} event {event_id} pass {repeat} {k}: "
                      f"{ {s: round(v[-1], 3) for s, v in times[k].items()} }", flush=True)
    record = {"events": len(ds.event_ids), "back_end_passes": repeats,
              "mean_sizes": {key: float(np.mean([s[key] for s in sizes])) for key in sizes[0]},
              "variants": {}}
    for k in specs:
        summary = evaluate_events(per_event[k])
        median = {s: float(np.median(v)) for s, v in times[k].items()}
        entry = {key: summary[key] for key in (
            "efficiency", "efficiency_err_low", "efficiency_err_high", "fake_rate",
            "fake_rate_err_low", "fake_rate_err_high", "duplicate_rate",
            "duplicate_rate_err_low", "duplicate_rate_err_high")}
        entry["rates"] = summary["rates"]
        entry["median_seconds"] = median
        entry["devices"] = devices[k]
        if transfers[k]:
            entry["transfers"] = transfers[k]
        back = BACK_END.get(k.split("/")[0])
        if back:
            entry["back_end_seconds"] = float(np.median(
                np.sum([times[k][s] for s in back], axis=0)))
        entry["stage_configs"] = {s: dict(v) for s, v in specs[k].stage_configs.items()}
        record["variants"][k] = entry
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["medium", "large"])
    parser.add_argument("--events", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--sim-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed passes of every back end per event, interleaved")
    parser.add_argument("--gpu-ckf", action=argparse.BooleanOptionalAction, default=None,
                        help="also time acorn_traccc with prototrack_ckf/gpu (default: when "
                             "torch sees CUDA)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "acorn_traccc.json")
    args = parser.parse_args()
    if args.gpu_ckf is None:
        import torch

        args.gpu_ckf = torch.cuda.is_available()
    events = dict(zip(args.presets, args.events + [args.events[-1]] * len(args.presets),
                      strict=False))
    results = {"seed": SEED, "machine": platform.platform(), "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            results["presets"][name] = run_preset(name, events[name], Path(tmp), args.sim_dir,
                                                  args.repeats, args.gpu_ckf)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({p: {k: (round(v["efficiency"], 4), round(v["fake_rate"], 4),
                              round(v["duplicate_rate"], 4), v.get("back_end_seconds"))
                          for k, v in r["variants"].items()}
                      for p, r in results["presets"].items()}, indent=1))


if __name__ == "__main__":
    main()
