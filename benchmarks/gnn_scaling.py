"""Time per stage of the ``acorn`` (GNN) pipeline versus event size, with its physics.

Run: ``.venv/bin/python benchmarks/gnn_scaling.py [--presets small medium large] [--events 2 [2 1]]
[--threads 1] [--checkpoint-dir DIR]``. Writes ``benchmarks/results/gnn_scaling.json``: per
preset the mean event sizes (cells, measurements, space points, graph edges), each stage's
median seconds per event and the device it actually ran on (a GPU stage without CUDA says
"cpu (CUDA unavailable)"), the edge efficiency / purity after graph construction (radius graph
and filter) and after the GNN, and the track efficiency / fake / duplicate rates (two_way
matching, pT > 1 GeV); per stage the log-log slope of time against space points over the
presets (1 = linear). Events are simulated with seed 11, unseen by the shipped models' training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taas.events.dataset import open_dataset
from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.gnn.checkpoint import SHIPPED, load_checkpoint, load_shipped
from taas.gnn.data import build_sample
from taas.gnn.training import evaluate
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import load_reco, reconstruct
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN
from taas.pipeline.timings import loglog_slopes, median_stage_seconds, read_timings

GNN_STAGES = ("graph_construction", "edge_classification")


def edge_metrics(sim: Path, reco: Path, checkpoint_dir: Path | None) -> dict:
    """Edge efficiency / purity after the radius graph, the filter and the GNN (at the cuts in
    the checkpoints: the shipped GNN's is 0.3, the acorn track building's), from the saved
    front-end tensors, with the same models the pipeline used."""
    ds = open_dataset(sim)
    samples = [build_sample(ds.read(i), load_reco(reco, i)) for i in ds.event_ids]
    ckpts = {name: (load_shipped(name) if checkpoint_dir is None
                    else load_checkpoint(checkpoint_dir / f"{name}.pt")) for name in SHIPPED}
    result = evaluate(samples, ckpts)
    return {stage: {k: result[stage][k] for k in ("efficiency", "purity", "target_efficiency",
                                                  "edges_per_event")}
            for stage in ("graph", "filter", "gnn")}


class _Bf16:
    """bf16 autocast on the CPU device: the numerics of the CUDA stages, measurable here."""

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16)


def amp_check(reco: Path, event_id: int, configs: dict) -> dict:
    """fp32 vs bf16-autocast scores of the filter and the GNN on one event's graph."""
    from backends.cpu.edge_classification import CpuEdgeClassification
    from backends.cpu.graph_construction import CpuGraphConstruction

    class Graph16(_Bf16, CpuGraphConstruction):
        pass

    class Edges16(_Bf16, CpuEdgeClassification):
        pass

    tensors = load_reco(reco, event_id)
    cfg = configs.get("graph_construction")
    out = {}
    g32 = CpuGraphConstruction(None, cfg).run(tensors)
    g16 = Graph16(None, cfg).run(tensors)
    out["filter_edges_fp32"] = len(g32["edges.src"])
    out["filter_edges_bf16"] = len(g16["edges.src"])
    e32 = CpuEdgeClassification(None, cfg).run({**tensors, **g32})
    e16 = Edges16(None, cfg).run({**tensors, **g32})
    diff = np.abs(e32["edges.score"] - e16["edges.score"])
    out["gnn_score_abs_diff_median"] = float(np.median(diff)) if len(diff) else 0.0
    out["gnn_score_abs_diff_p99"] = float(np.quantile(diff, 0.99)) if len(diff) else 0.0
    out["gnn_same_decision_at_0.5"] = float(np.mean((e32["edges.score"] > 0.5)
                                                    == (e16["edges.score"] > 0.5)))
    return out


def bench(name: str, events: int, work: Path, checkpoint_dir: Path | None) -> dict:
    preset = PRESETS[name]
    sim = work / name
    simulate(sim, events=events, vertices=preset.vertices,
             particles_per_vertex=preset.particles_per_vertex, seed=11, progress=False)
    configs = ({} if checkpoint_dir is None else
               {s: {"checkpoint_dir": str(checkpoint_dir)} for s in GNN_STAGES})
    t0 = time.perf_counter()
    reconstruct(sim, work / f"{name}-reco", ACORN, progress=False, warmup=True,
                factory=lambda spec, det: Pipeline(spec, det, configs))
    wall = time.perf_counter() - t0
    run = json.loads((work / f"{name}-reco" / "run.json").read_text())
    sizes = list(run["sizes"].values())
    n_edges = [len(load_reco(work / f"{name}-reco", i)["edges.src"])
               for i in open_dataset(sim).event_ids]
    rows = read_timings(work / f"{name}-reco")
    summary = evaluate_run(sim, work / f"{name}-reco", work / f"{name}-metrics")
    return {
        "preset": name, "events": events,
        "mean_sizes": {**{k: float(np.mean([s[k] for s in sizes])) for k in sizes[0]},
                       "graph_edges_after_filter": float(np.mean(n_edges))},
        "stage_s_per_event": median_stage_seconds(rows),
        "stage_device": {r["stage"]: r["device"] for r in rows},
        "wall_s_incl_warmup": wall,
        "edges": edge_metrics(sim, work / f"{name}-reco", checkpoint_dir),
        "tracks": {k: summary[k] for k in ("efficiency", "fake_rate", "duplicate_rate")},
        "fp32_vs_bf16_autocast_cpu": amp_check(work / f"{name}-reco",
                                               open_dataset(sim).event_ids[0], configs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "medium", "large"],
                        choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, nargs="+", default=[2],
                        help="events per preset: one number for all, or one per preset")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="models to use instead of the shipped ones")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "gnn_scaling.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        events = args.events * len(args.presets) if len(args.events) == 1 else args.events
        if len(events) != len(args.presets):
            parser.error("--events: give one number, or one per preset")
        for name, n in zip(args.presets, events, strict=True):
            results.append(bench(name, n, Path(tmp), args.checkpoint_dir))
            print(json.dumps(results[-1]), flush=True)
    out = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
           "torch": str(torch.__version__), "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
           "checkpoints": "shipped" if args.checkpoint_dir is None else str(args.checkpoint_dir),
           "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
           "results": results,
           "loglog_slope_vs_spacepoints": loglog_slopes(
               [r["mean_sizes"]["spacepoints"] for r in results],
               [r["stage_s_per_event"] for r in results]) if len(results) > 1 else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["loglog_slope_vs_spacepoints"], indent=2))


if __name__ == "__main__":
    main()
