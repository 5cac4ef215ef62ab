"""Where the GNN stages spend their time on one event, step by step, on torch's best device.

Run: ``python benchmarks/gnn_gpu_profile.py --events DIR [--event-index 0] [--reps 5]``.
Writes ``benchmarks/results/gnn_gpu_profile.json``: the median seconds of each step of
graph construction (node features, embedding, FRNN (on CUDA also the torch-gather FRNN that
the numba kernel replaced), pair dedup/orientation, edge filter at several chunk sizes), of
the interaction GNN and of track building, with CUDA synchronised
around every step, plus the FRNN's candidate pairs per grid size. The stage timings of
``gnn_scaling.py`` are sums of these steps; this says which step to work on.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from backends.gpu.edge_classification import GpuEdgeClassification
from backends.gpu.graph_construction import GpuGraphConstruction
from backends.gpu.track_building import GpuTrackBuilding, TrackBuildingConfig
from taas.events.dataset import open_dataset
from taas.gnn.data import front_end
from taas.gnn.features import edge_features
from taas.gnn.frnn import _Grid, frnn_torch
from taas.gnn.stages import undirected_oriented
from taas.pipeline.spec import ACORN


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median wall seconds of ``fn`` over ``reps`` calls after one warm-up, and its result."""
    out = fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def variants(steps: dict, info: dict, graph: GpuGraphConstruction, gnn: GpuEdgeClassification,
             x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, fsrc: torch.Tensor,
             fdst: torch.Tensor, reps: int, compile_models: bool) -> None:
    """Candidate speed-ups of the two edge models on CUDA, each timed with the fraction of
    edges whose decision (filter cut; GNN 0.3) equals the stage's bf16-autocast one."""
    cut = {"filter": graph.filter_cut, "gnn": 0.3}
    edges = {"filter": (graph, src, dst), "gnn": (gnn, fsrc, fdst)}
    for name, (stage, a, b) in edges.items():
        model = stage.models[name].model
        with torch.inference_mode():
            ef = edge_features(x, a, b)
            ref = stage.scores(name, x, a, b) > cut[name]
        weights16 = copy.deepcopy(model).to(torch.bfloat16)

        def bf16_weights(m: torch.nn.Module = weights16, a: torch.Tensor = a,
                         b: torch.Tensor = b, ef: torch.Tensor = ef) -> torch.Tensor:
            with torch.inference_mode():
                return torch.sigmoid(m(x.bfloat16(), a, b, ef.bfloat16()).float())

        steps[f"{name}_bf16_weights"], score = timed(bf16_weights, reps)
        info[f"{name}_bf16_weights_same_decision"] = float(
            ((score > cut[name]) == ref).float().mean())
        if not compile_models:
            continue
        compiled = torch.compile(model, dynamic=True)

        def autocast_compiled(m: torch.nn.Module = compiled, a: torch.Tensor = a,
                              b: torch.Tensor = b, ef: torch.Tensor = ef) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                return torch.sigmoid(m(x, a, b, ef).float())

        t0 = time.perf_counter()
        autocast_compiled()
        info[f"{name}_compile_s"] = time.perf_counter() - t0
        steps[f"{name}_compiled_autocast"], score = timed(autocast_compiled, reps)
        info[f"{name}_compiled_same_decision"] = float(
            ((score > cut[name]) == ref).float().mean())


def profile(tensors: dict, reps: int, compile_models: bool = False) -> dict:
    graph = GpuGraphConstruction(None)
    steps: dict[str, float] = {}
    info: dict[str, Any] = {"device": graph.device, "spacepoints": len(tensors["spacepoints.x"])}
    steps["graph_stage_total"], g = timed(lambda: graph.run(tensors), reps)
    steps["node_inputs"], (x, xyz) = timed(lambda: graph.node_inputs(tensors), reps)

    def embed() -> torch.Tensor:
        with torch.inference_mode():
            return graph.models["embedding"].model(x)

    steps["embedding"], emb = timed(embed, reps)
    for dims in range(1, 7):
        t, grid = timed(lambda d=dims: _Grid.build(emb, graph.r, d), 1)
        info[f"grid{dims}_candidates"] = int(grid.candidate_counts().sum())
        info[f"grid{dims}_lookups"] = grid.lookups
        steps[f"grid{dims}_build"] = t
    info["grid_auto_dims"] = int(_Grid.build(emb, graph.r, None).dims.numel())
    steps["frnn"], pairs = timed(lambda: graph.frnn(emb), reps)
    if emb.is_cuda:
        for cand in (22, 26):
            steps[f"frnn_torch_gathers_2^{cand}"], _ = timed(
                lambda c=cand: frnn_torch(emb, graph.r, graph.k, max_candidates=1 << c,
                                          kernel=False), reps)
    info["frnn_pairs"] = len(pairs[0])
    steps["undirected_oriented"], (src, dst) = timed(
        lambda: undirected_oriented(pairs[0].to(x.device), pairs[1].to(x.device), xyz, len(x)),
        reps)
    info["graph_edges"] = len(src)
    for chunk in (16, 20, 22, 30):
        steps[f"filter_chunk_2^{chunk}"], _ = timed(
            lambda c=1 << chunk: torch.cat([graph.scores("filter", x, src[i:i + c],
                                                         dst[i:i + c])
                                            for i in range(0, len(src), c)]), reps)
    steps["edge_features_graph"], _ = timed(lambda: edge_features(x, src, dst), reps)

    gnn = GpuEdgeClassification(None)
    gin = {**tensors, **g}
    info["filtered_edges"] = len(g["edges.src"])
    steps["gnn_stage_total"], scored = timed(lambda: gnn.run(gin), reps)
    fsrc = torch.from_numpy(g["edges.src"]).to(x.device)
    fdst = torch.from_numpy(g["edges.dst"]).to(x.device)
    steps["gnn_scores_only"], _ = timed(lambda: gnn.scores("gnn", x, fsrc, fdst), reps)
    model = gnn.models["gnn"].model
    with torch.inference_mode():
        ef = edge_features(x, fsrc, fdst)

    def fp32() -> torch.Tensor:
        with torch.inference_mode():
            return model(x, fsrc, fdst, ef)

    steps["gnn_forward_fp32"], _ = timed(fp32, reps)
    if x.is_cuda:
        variants(steps, info, graph, gnn, x, src, dst, fsrc, fdst, reps, compile_models)
    tb_cfg = dict(ACORN.stage_configs["track_building"])
    tb = GpuTrackBuilding(None, TrackBuildingConfig(**tb_cfg))
    steps["track_building_total"], _ = timed(lambda: tb.run({**tensors, **scored}), reps)
    tb_cc = GpuTrackBuilding(None, TrackBuildingConfig(**{**tb_cfg, "method": "cc"}))
    steps["track_building_cc_total"], _ = timed(lambda: tb_cc.run({**tensors, **scored}), reps)
    if torch.cuda.is_available():
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            graph.run(tensors)
            gnn.run(gin)
        info["profiler_top"] = prof.key_averages().table(sort_by="cuda_time_total",
                                                         row_limit=30)
    return {"steps_s": steps, "info": info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--event-index", type=int, default=0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd models (CUDA; compiles for minutes)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "gnn_gpu_profile.json")
    args = parser.parse_args()
    ds = open_dataset(args.events)
    tensors = front_end(ds.read(ds.event_ids[args.event_index]))
    result = {"torch": torch.__version__,
              "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "events": str(args.events), **profile(tensors, args.reps, args.compile)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "info"}, indent=2))
    print(json.dumps({k: v for k, v in result["info"].items() if k != "profiler_top"}, indent=2))
    print(result["info"].get("profiler_top", ""))


if __name__ == "__main__":
    main()
