"""Time per stage of the ``acorn`` (GNN) pipeline versus event size, with its physics.

Run: ``.venv/bin/python benchmarks/gnn_scaling.py [--presets small medium large] [--events 2 [2 1]]
[--threads 1] [--checkpoint-dir DIR] [--passes N] [--sim-dir DIR] [--front-end cpu|gpu]
[--compile] [--prefault-gib G]``.
Writes ``benchmarks/results/gnn_scaling.json``: per
preset the mean event sizes (cells, measurements, space points, graph edges), each stage's
median seconds per event and the device it actually ran on (a GPU stage without CUDA says
"cpu (CUDA unavailable)"), the edge efficiency / purity after graph construction (radius graph
and filter) and after the GNN, and the track efficiency / fake / duplicate rates (two_way
matching, pT > 1 GeV); per stage the log-log slope of time against space points over the
presets (1 = linear). Events are simulated with seed 11, unseen by the shipped models' training.

``--sim-dir DIR`` reads ``DIR/<preset>`` simulated elsewhere (``simulate`` with seed 11) instead:
the GPU machine has no ACTS for its Python. ``--passes N`` reconstructs every event N times, the
presets taking turns (``scaling_runs.interleaved_passes``), and takes the median over events and
passes (one large event on a GPU is too few timings); each pass's own slopes are recorded too.
``--front-end gpu`` runs clustering and space points with the OpenCL kernels too;
``--compile`` turns on the GNN stages' opt-in ``torch.compile`` (CUDA). The numerics
check compares each GNN stage with the fp32 CPU stage on one event: on CUDA against the GPU
stage as it runs (bf16 autocast), elsewhere against bf16 autocast on the CPU device.
``--prefault-gib G`` touches G GiB of fresh memory before timing (``prefault_memory``: on this
project's lazily backed VMs a first touch costs 2.5 s per GiB; a large event's GNN stages
allocate a few GiB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scaling_runs import (
    SEED,
    add_passes_argument,
    add_prefault_argument,
    end_record,
    interleaved_passes,
    simulated,
    slopes,
    start_record,
    timing_record,
)

from taas.events.dataset import open_dataset
from taas.events.presets import PRESETS
from taas.gnn.checkpoint import SHIPPED, load_checkpoint, load_shipped
from taas.gnn.data import build_sample
from taas.gnn.training import evaluate
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import load_reco, reconstruct
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN

GNN_STAGES = ("graph_construction", "edge_classification")
FRONT_END = ("clustering", "spacepoints")


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


def numerics_check(reco: Path, event_id: int, configs: dict) -> tuple[str, dict]:
    """The fp32 CPU stages against the GPU stages (CUDA) or bf16 autocast (CPU device) on one
    event: filtered edge counts, and the GNN scores on the same (fp32) graph."""
    from backends.cpu.edge_classification import CpuEdgeClassification
    from backends.cpu.graph_construction import CpuGraphConstruction
    from backends.gpu.edge_classification import GpuEdgeClassification
    from backends.gpu.graph_construction import GpuGraphConstruction

    if torch.cuda.is_available():
        name, graph_cls, edges_cls = ("fp32_cpu_vs_cuda_bf16_autocast", GpuGraphConstruction,
                                      GpuEdgeClassification)
        chunk = {}
    else:
        class Graph16(_Bf16, CpuGraphConstruction):
            pass

        class Edges16(_Bf16, CpuEdgeClassification):
            pass

        name, graph_cls, edges_cls = "fp32_vs_bf16_autocast_cpu", Graph16, Edges16
        chunk = {"gnn_chunk": 0}  # the chunked CPU path runs without autocast
    tensors = load_reco(reco, event_id)
    cfg = configs.get("graph_construction")
    g32 = CpuGraphConstruction(None, cfg).run(tensors)
    g16 = graph_cls(None, cfg).run(tensors)
    keys32 = g32["edges.src"] * len(tensors["spacepoints.x"]) + g32["edges.dst"]
    keys16 = g16["edges.src"] * len(tensors["spacepoints.x"]) + g16["edges.dst"]
    out = {"filter_edges_fp32": len(keys32), "filter_edges_other": len(keys16),
           "filter_edges_common": int(np.isin(keys16, keys32).sum())}
    e32 = CpuEdgeClassification(None, cfg).run({**tensors, **g32})
    e16 = edges_cls(None, {**(cfg or {}), **chunk}).run({**tensors, **g32})
    diff = np.abs(e32["edges.score"] - e16["edges.score"])
    out["gnn_score_abs_diff_median"] = float(np.median(diff)) if len(diff) else 0.0
    out["gnn_score_abs_diff_p99"] = float(np.quantile(diff, 0.99)) if len(diff) else 0.0
    out["gnn_same_decision_at_0.3"] = float(np.mean((e32["edges.score"] > 0.3)
                                                    == (e16["edges.score"] > 0.3)))
    return name, out


def stage_configs(args: argparse.Namespace) -> dict[str, dict]:
    """The GNN stages' configs: the checkpoints to load and ``compile``."""
    checkpoint_dir = args.checkpoint_dir
    return {s: {**({} if checkpoint_dir is None else {"checkpoint_dir": str(checkpoint_dir)}),
                **({"compile": True} if args.compile else {})} for s in GNN_STAGES}


def summary(name: str, sim: Path, work: Path, rows: list[dict],
            per_pass: list[dict[str, float]], wall: float, configs: dict[str, dict],
            args: argparse.Namespace) -> dict:
    """One preset's record: sizes and stage times (``timing_record``), devices, edge and track
    metrics of the first pass, and the numerics check."""
    reco = work / f"{name}-reco"
    event_ids = open_dataset(sim).event_ids
    record = timing_record(reco, rows, per_pass, wall)
    n_edges = [len(load_reco(reco, i)["edges.src"]) for i in event_ids]
    record["mean_sizes"]["graph_edges_after_filter"] = float(np.mean(n_edges))
    metrics = evaluate_run(sim, reco, work / f"{name}-metrics")
    return {
        "preset": name, **record,
        "stage_device": {r["stage"]: r["device"] for r in rows},
        "edges": edge_metrics(sim, reco, args.checkpoint_dir),
        "tracks": {k: metrics[k] for k in ("efficiency", "fake_rate", "duplicate_rate")},
        "numerics": dict([numerics_check(reco, event_ids[0], configs)]),
    }


def bench(names: list[str], events: list[int], work: Path, args: argparse.Namespace
          ) -> list[dict]:
    """Every preset ``args.passes`` times, the presets taking turns within each pass."""
    sims = {name: simulated(name, n, work, args.sim_dir)
            for name, n in zip(names, events, strict=True)}
    configs = stage_configs(args)
    spec = ACORN.with_routing(dict.fromkeys(FRONT_END, args.front_end))
    rows, per_pass, wall = interleaved_passes(
        names, args.passes,
        lambda name, i: reconstruct(sims[name], work / f"{name}-reco{i or ''}", spec,
                                    progress=False, warmup=i == 0,
                                    factory=lambda s, det: Pipeline(s, det, configs)))
    return [summary(name, sims[name], work, rows[name], per_pass[name], wall[name], configs, args)
            for name in names]


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
    add_passes_argument(parser)
    parser.add_argument("--sim-dir", type=Path, default=None,
                        help="read DIR/<preset> (seed 11) instead of simulating")
    parser.add_argument("--front-end", choices=("cpu", "gpu"), default="cpu",
                        help="backend of clustering and space points (gpu: OpenCL)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the edge models (CUDA only; GnnStageConfig.compile)")
    add_prefault_argument(parser)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "gnn_scaling.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    record = start_record(args.prefault_gib)
    events = args.events * len(args.presets) if len(args.events) == 1 else args.events
    if len(events) != len(args.presets):
        parser.error("--events: give one number, or one per preset")
    with tempfile.TemporaryDirectory() as tmp:
        results = bench(args.presets, events, Path(tmp), args)
    fitted = slopes([r["mean_sizes"]["spacepoints"] for r in results], results)
    out = {**end_record(record), "torch": str(torch.__version__),
           "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
           "checkpoints": "shipped" if args.checkpoint_dir is None else str(args.checkpoint_dir),
           "events_from": f"simulated (seed {SEED})" if args.sim_dir is None else str(args.sim_dir),
           "results": results,
           "loglog_slope_vs_spacepoints": fitted["median"],
           "loglog_slope_per_pass": fitted["per_pass"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["loglog_slope_vs_spacepoints"], indent=2))


if __name__ == "__main__":
    main()
