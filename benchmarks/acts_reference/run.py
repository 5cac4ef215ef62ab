"""ACTS' own reconstruction on taas-simulated presets: times per stage and physics rates.

Run: ``.venv/bin/python benchmarks/acts_reference/run.py --presets small medium --events 2
--out benchmarks/results/acts_reference.json``. Each preset is simulated (``simulate``, fixed
seed) into a temporary directory (or reused from ``--sim-dir/<preset>``), reconstructed by
ACTS (``chain.run_acts_reference``: ACTS' default seeding, and a variant with the seeding's
collision region widened to +-250 mm) and scored with taas' metrics (two_way, pT > 1 GeV).

The JSON holds, per preset, ``sizes`` and one entry per reconstruction: ``acts``,
``acts_collision_250mm`` and ``taas`` (taas' CPU pipeline), so that results of every chain on
the same events, taken in one run, sit side by side. ``--min-pt MEV`` sets the seeding's
minimum pT of both ACTS and taas (e.g. 900, the event-filter threshold of
``benchmarks/configs/event_filter_seeding.json``; default: each one's own, 400 and 500 MeV).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chain import evaluate_acts_tracks, run_acts_reference

from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.metrics.config import MatchingConfig
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.spec import CPU, PipelineSpec
from taas.pipeline.timings import read_timings, seconds_by_stage

#: Seed of every simulation here (the notes' ACTS-only measurement used seed 1 as well).
SEED = 1
#: Variants: result key -> seeding collision region half-width in mm (None: ACTS default).
VARIANTS: dict[str, float | None] = {"acts": None, "acts_collision_250mm": 250.0}
METRIC_KEYS = (
    "efficiency", "efficiency_err_low", "efficiency_err_high",
    "fake_rate", "fake_rate_err_low", "fake_rate_err_high",
    "duplicate_rate", "duplicate_rate_err_low", "duplicate_rate_err_high",
    "n_tracks", "n_tracks_all", "n_matched_tracks", "n_fiducial_particles",
    "n_reconstructed_particles", "n_duplicated_particles", "n_events",
    "efficiency_vs_pt", "efficiency_vs_eta",
)


def _clean(x: Any) -> Any:
    """JSON-ready: numpy to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _sim_dir(name: str, events: int, root: Path) -> tuple[Path, bool]:
    """``root/name`` holding at least ``events`` events of preset ``name`` at ``SEED``, and
    whether it was simulated now (False: reused)."""
    preset = PRESETS[name]
    target = root / name
    manifest = target / "dataset.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        same = (info.get("seed") == SEED and info.get("vertices") == preset.vertices
                and info.get("particles_per_vertex") == preset.particles_per_vertex
                and info.get("events", 0) >= events and info.get("skip", 0) == 0)
        if same:
            return target, False
        raise SystemExit(f"{target} holds a different simulation; choose another --sim-dir")
    simulate(target, events=events, vertices=preset.vertices,
             particles_per_vertex=preset.particles_per_vertex, seed=SEED,
             pt_range=(preset.pt_min, preset.pt_max), eta_max=preset.eta_max, pdg=preset.pdg,
             progress=False)
    return target, True


def _median_run(runs: list[dict]) -> dict:
    """The first run's record with every time replaced by the median over ``runs``.

    The tracks are identical between runs (ACTS is deterministic single-threaded); the times
    are not, on a shared machine, so the median of a few runs is reported, with each run's
    stage times beside it.
    """
    out = dict(runs[0])
    for key in ("time_s_per_event", "algorithms_s_per_event"):
        out[key] = {k: float(np.median([r[key][k] for r in runs])) for k in runs[0][key]}
    out["reco_s_per_event"] = float(sum(out["time_s_per_event"].values()))
    out["wall_s"] = float(np.median([r["wall_s"] for r in runs]))
    out["repeats"] = len(runs)
    out["time_s_per_event_runs"] = [r["time_s_per_event"] for r in runs]
    if any(r["n_tracks"] != runs[0]["n_tracks"] for r in runs):
        raise RuntimeError("ACTS gave different track counts between repeats")
    return out


def bench_preset(name: str, events: int, sim_root: Path, work: Path, threads: int,
                 variants: dict[str, float | None], matching: MatchingConfig,
                 repeat: int, min_pt_mev: float | None = None) -> dict:
    preset = PRESETS[name]
    t0 = time.perf_counter()
    sim, simulated = _sim_dir(name, events, sim_root)
    sim_s = time.perf_counter() - t0 if simulated else None
    ids = list(range(events))
    entry: dict[str, Any] = {
        "preset": {"vertices": preset.vertices,
                   "particles_per_vertex": preset.particles_per_vertex,
                   "pt_range_gev": [preset.pt_min, preset.pt_max], "eta_max": preset.eta_max,
                   "pdg": list(preset.pdg), "seed": SEED},
        "events": events,
        "simulation_s_per_event": None if sim_s is None else sim_s / events,
    }
    for key, region in variants.items():
        out = work / name / key
        runs = [run_acts_reference(sim, out, events=ids, threads=threads,
                                   collision_region_mm=region, min_pt_mev=min_pt_mev)
                for _ in range(repeat)]
        reco = _median_run(runs)
        summary, sizes = evaluate_acts_tracks(sim, out, ids, matching)
        if "sizes" not in entry:
            keys = [k for k in sizes[0] if k not in ("event_id", "acts_tracks")]
            entry["sizes"] = {"per_event": [{k: s[k] for k in ("event_id", *keys)}
                                            for s in sizes],
                              "mean": {k: float(np.mean([s[k] for s in sizes])) for k in keys}}
        reco.pop("tracks_files")
        reco["metrics"] = {k: summary[k] for k in METRIC_KEYS if k in summary}
        entry[key] = reco
        print(f"{name:>7} {key:<22} reco {reco['reco_s_per_event']:.3f} s/event "
              f"(seeding {reco['time_s_per_event']['seeding']:.3f}, "
              f"ckf {reco['time_s_per_event']['ckf']:.3f})  "
              f"eff {summary['efficiency']:.4f}  fake {summary['fake_rate']:.4f}  "
              f"dup {summary['duplicate_rate']:.4f}", flush=True)
    spec = CPU if min_pt_mev is None else CPU.with_configs({"seeding": {"min_pt": min_pt_mev}})
    entry["taas"] = bench_taas(sim, work / name / "taas", matching, repeat, spec)
    return entry


def bench_taas(sim: Path, out: Path, matching: MatchingConfig, repeat: int,
               spec: PipelineSpec = CPU) -> dict:
    """taas' CPU pipeline (``spec``) on the same events: median over ``repeat`` runs of each
    stage's mean time per event (first event run once untimed first, as ACTS' Sequencer
    excludes its initialisation), scored with the same metrics."""
    runs = []
    for _ in range(repeat):
        reconstruct(sim, out, spec, progress=False, warmup=True)
        runs.append({stage: float(np.mean(v)) for (stage, _, _), v
                     in seconds_by_stage(read_timings(out)).items()})
    times = {st: float(np.median([r[st] for r in runs])) for st in runs[0]}
    summary = evaluate_run(sim, out, out / "metrics", matching)
    reco_stages = ("seeding", "ckf", "ambiguity")
    entry = {"pipeline": spec.name, "steps": [list(s) for s in spec.steps],
             "stage_configs": {k: dict(v) for k, v in spec.stage_configs.items()},
             "time_s_per_event": times,
             "reco_s_per_event": sum(times[k] for k in reco_stages),
             "total_s_per_event": sum(times.values()),
             "reco_note": "reco = seeding + ckf + ambiguity (ACTS' reco total also counts space "
                          "point making and parameter estimation, which taas does inside "
                          "spacepoints and ckf); total adds clustering, space points and the "
                          "final Kalman fit",
             "repeats": repeat, "time_s_per_event_runs": runs,
             "metrics": {k: summary[k] for k in METRIC_KEYS if k in summary}}
    print(f"{'':>7} {'taas':<22} reco {entry['reco_s_per_event']:.3f} s/event "
          f"(seeding {times['seeding']:.3f}, ckf {times['ckf']:.3f}; total "
          f"{entry['total_s_per_event']:.3f})  eff {summary['efficiency']:.4f}  "
          f"fake {summary['fake_rate']:.4f}  dup {summary['duplicate_rate']:.4f}", flush=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small", "medium"],
                        choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3,
                        help="ACTS runs per preset and variant; times are their median")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/acts_reference.json"))
    parser.add_argument("--sim-dir", type=Path, default=None,
                        help="simulate into / reuse <sim-dir>/<preset> (default: a temp dir)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep ACTS' tracks and timing files here (default: a temp dir)")
    parser.add_argument("--no-wide", action="store_true",
                        help="skip the +-250 mm collision-region variant")
    parser.add_argument("--min-pt", type=float, default=None, metavar="MEV",
                        help="seeding minimum pT of ACTS and taas alike (default: their own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import acts

    variants = {k: v for k, v in VARIANTS.items() if not (args.no_wide and v is not None)}
    matching = MatchingConfig()
    result: dict[str, Any] = {
        "benchmark": "acts_reference",
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "acts_version": f"{acts.version.major}.{acts.version.minor}.{acts.version.patch}",
        "threads": args.threads,
        "seeding_min_pt_mev": args.min_pt,
        "matching": matching.to_dict(),
        "timing_note": "seconds per event from ACTS' Sequencer timing.csv (mean over the "
                       "events, median over --repeat runs); reco_s_per_event = space_points "
                       "+ seeding + parameter_estimation + ckf + ambiguity_resolution",
        "presets": {},
    }
    with tempfile.TemporaryDirectory(prefix="acts_reference_") as tmp:
        sim_root = args.sim_dir or Path(tmp) / "sim"
        work = args.work_dir or Path(tmp) / "reco"
        for name in args.presets:
            result["presets"][name] = bench_preset(name, args.events, sim_root, work,
                                                   args.threads, variants, matching,
                                                   args.repeat, args.min_pt)
    result["load_average_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_clean(result), indent=2, allow_nan=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
