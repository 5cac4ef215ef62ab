"""Module-map graph construction (GNN4ITk) next to the shipped metric-learning graph.

Run: ``.venv/bin/python benchmarks/module_map.py --train-samples DIR --events small=DIR
medium=DIR large=DIR [--margins 0 0.1 0.3 0.5] [--min-pt 0.5] [--train-events N]
[--map-models DIR | --train-models DIR]``.

``--train-samples`` holds cached ``GraphSample`` files (``taas.gnn.data.prepare_samples``) of
training events, which must not be the evaluation events (``--events``: simulated with seed 11, as
in the other GNN benchmarks). The map is built from the truth edges of particles above ``--min-pt``
GeV. For each margin and each evaluation preset it reports, with event sizes: edges per space
point, edge efficiency (all truth edges; those of pT > 1 GeV particles) and purity of the map's
graph, the map lookup's seconds per event (one thread), the same after the shipped edge filter (its
own cut; for the learned graph the filter is inside the graph stage's time), and the proto-tracks
that the shipped GNN and track building (CC & walkthrough) make of it (two_way matching, before the
Kalman fit's selection). The shipped learned graph (embedding + FRNN, then the filter) through the
same stages is the reference. ``--map-models`` puts the module-map graphs through a filter and GNN
trained on such graphs instead (``filter.pt``, ``gnn.pt``); ``--train-models DIR`` trains them
first, as the shipped ones (same events and recipe, 27 minutes on one core). Writes
``benchmarks/results/module_map.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backends.cpu.edge_classification import CpuEdgeClassification
from backends.cpu.graph_construction import CpuGraphConstruction
from backends.cpu.track_building import CpuTrackBuilding
from taas.events.dataset import open_dataset
from taas.gnn.checkpoint import SHIPPED, load_checkpoint, load_shipped
from taas.gnn.data import (
    GraphSample,
    build_sample,
    front_end,
    load_samples,
    prepare_samples,
    radius_graph,
)
from taas.gnn.module_map import QUANTITIES, ModuleMap, build_module_map, module_map_edges
from taas.gnn.training import (
    SHIPPED_DATA,
    GraphCounts,
    edge_scores,
    embed,
    shipped_config,
    simulate_once,
    train_edge_models,
)
from taas.metrics.evaluate import evaluate_event, evaluate_events
from taas.metrics.truth_link import measurement_particles

TARGET_PT = 1.0


def training_doublets(samples: list[GraphSample], min_pt: float
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per sample: positions, modules and its truth edges of particles above ``min_pt``."""
    out = []
    for s in samples:
        keep = s.truth_pt() >= min_pt
        out.append((s.xyz, s.module, s.truth_src[keep], s.truth_dst[keep]))
    return out


class Chain:
    """A filter, GNN and track building applied to any graph of one event: the shipped models,
    or the ``filter.pt`` and ``gnn.pt`` of ``models`` (trained on module-map graphs)."""

    def __init__(self, models: Path | None = None) -> None:
        config = None if models is None else {"checkpoint_dir": str(models)}
        self.filter = (load_shipped("filter") if models is None
                       else load_checkpoint(models / "filter.pt"))
        self.gnn = CpuEdgeClassification(None, config)
        self.tracks = CpuTrackBuilding(None)

    def filtered(self, sample: GraphSample, src: np.ndarray, dst: np.ndarray
                 ) -> dict[str, np.ndarray]:
        """The edges of ``src -> dst`` that pass the filter at its cut."""
        score = edge_scores(self.filter.model, sample.x, src, dst)
        keep = score > self.filter["cut"]
        return {"edges.src": src[keep], "edges.dst": dst[keep], "edges.score": score[keep]}

    def proto_tracks(self, tensors: dict[str, np.ndarray], edges: dict[str, np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
        scored = self.gnn.run({**tensors, **edges})
        out = self.tracks.run({**tensors, **scored})
        return out["prototracks.offsets"], out["prototracks.indices"]


class Tally:
    """Graph counts before / after the filter, seconds, and proto-track results of one graph
    method over the events of a preset."""

    def __init__(self) -> None:
        self.graph, self.filter = GraphCounts(), GraphCounts()
        self.seconds: dict[str, list[float]] = {"graph": [], "filter": []}
        self.track_events: list[dict] = []

    def result(self) -> dict:
        tracks = evaluate_events(self.track_events)
        return {"graph": self.graph.result(), "filter": self.filter.result(),
                **{f"{step}_s_per_event": float(np.median(t)) if t else None
                   for step, t in self.seconds.items()},
                "proto_tracks": {k: tracks[k] for k in ("efficiency", "fake_rate",
                                                        "duplicate_rate", "n_tracks",
                                                        "n_fiducial_particles")}}


def bench_preset(events: Path, maps: dict[str, ModuleMap], learned_graph: CpuGraphConstruction,
                 chains: dict[str, Chain], ckpts: dict) -> dict:
    """``chains``: "learned" and "module_map", the models each graph goes through."""
    dataset = open_dataset(events)
    tallies = {name: Tally() for name in ("learned", *maps)}
    sizes = []
    for event_id in tqdm(dataset.event_ids, desc=events.name, unit="event"):
        event = dataset.read(event_id)
        tensors = front_end(event)
        sample = build_sample(event, tensors)
        sizes.append(sample.n_nodes)
        particle_of = measurement_particles(event.cells.hit_id, tensors["clusters.cluster_id"],
                                            len(tensors["measurements.local_u"]), event.hits)
        module = tensors["measurements.module_key"][tensors["spacepoints.measurement_index"]]
        t0 = time.perf_counter()
        graphs = {"learned": learned_graph.run(tensors)}
        tallies["learned"].seconds["graph"].append(time.perf_counter() - t0)
        embedding = ckpts["embedding"]
        tallies["learned"].graph.add(sample, *radius_graph(
            embed(embedding.model, sample.x), sample.xyz, embedding["r"], embedding["k"]),
            TARGET_PT)
        for name, module_map in maps.items():
            tally = tallies[name]
            t0 = time.perf_counter()
            a, b = module_map_edges(module_map, sample.xyz, module)
            tally.seconds["graph"].append(time.perf_counter() - t0)
            tally.graph.add(sample, a, b, TARGET_PT)
            t0 = time.perf_counter()
            graphs[name] = chains["module_map"].filtered(sample, a, b)
            tally.seconds["filter"].append(time.perf_counter() - t0)
        for name, edges in graphs.items():
            tally = tallies[name]
            tally.filter.add(sample, edges["edges.src"], edges["edges.dst"], TARGET_PT)
            chain = chains["learned" if name == "learned" else "module_map"]
            offsets, indices = chain.proto_tracks(tensors, edges)
            tally.track_events.append(evaluate_event(offsets, indices, particle_of,
                                                     event.particles))
    return {"events": len(sizes), "spacepoints_per_event": float(np.mean(sizes)),
            "methods": {name: tally.result() for name, tally in tallies.items()}}



def train_map_models(out: Path, module_map: ModuleMap) -> dict:
    """Filter and GNN trained as the shipped ones (``SHIPPED_DATA`` events, ``shipped_config``)
    but on the module map's graphs; ``filter.pt`` and ``gnn.pt`` land in ``out``."""
    data = SHIPPED_DATA
    samples = {}
    for part in ("train", "val"):
        events = simulate_once(out / "events" / part, data["preset"], data[f"{part}_events"],
                               data[f"{part}_seed"])
        samples[part] = load_samples(prepare_samples(events, out / "samples" / part))

    def graphs(part: str) -> list[tuple[np.ndarray, np.ndarray]]:
        return [module_map_edges(module_map, s.xyz, s.module) for s in samples[part]]

    return train_edge_models(out, samples["train"], samples["val"], graphs("train"),
                             graphs("val"), shipped_config(),
                             metadata={"graph": "module map", "data": data})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=Path, required=True)
    parser.add_argument("--train-events", type=int, default=None,
                        help="use only the first N training samples (default: all)")
    parser.add_argument("--events", nargs="+", required=True, metavar="PRESET=DIR")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5])
    parser.add_argument("--min-pt", type=float, default=0.5)
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--map-models", type=Path, default=None,
                        help="filter.pt and gnn.pt trained on module-map graphs (default: the "
                             "shipped ones, trained on learned graphs)")
    models.add_argument("--train-models", type=Path, default=None, metavar="DIR",
                        help="first train them (shipped data and recipe, graphs of the map at "
                             "the largest margin) into DIR, then use them")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "module_map.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_paths = sorted(args.train_samples.glob("*.npz"))[:args.train_events]
    if not train_paths:
        raise SystemExit(f"no samples in {args.train_samples}")
    t0 = time.perf_counter()
    base = build_module_map(training_doublets(load_samples(train_paths), args.min_pt))
    build_s = time.perf_counter() - t0
    maps = {f"module_map_margin_{m:g}": base.widened(m) for m in args.margins}
    if args.train_models is not None:
        train_map_models(args.train_models, base.widened(max(args.margins)))
        args.map_models = args.train_models
    ckpts = {name: load_shipped(name) for name in SHIPPED}
    learned = Chain()
    chains = {"learned": learned,
              "module_map": learned if args.map_models is None else Chain(args.map_models)}
    results = {}
    for spec in args.events:
        preset, _, directory = spec.partition("=")
        results[preset] = bench_preset(Path(directory), maps, CpuGraphConstruction(None), chains,
                                       ckpts)
        print(json.dumps({preset: results[preset]}), flush=True)
    out = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": 1,
           "quantities": list(QUANTITIES), "min_pt_gev": args.min_pt,
           "train_samples": str(args.train_samples), "train_events": len(train_paths),
           "module_pairs": len(base), "doublets_per_pair_median": float(
               np.median(base.n_doublets)) if len(base) else 0.0,
           "build_s": build_s, "target_pt_gev": TARGET_PT,
           "module_map_models": "shipped" if args.map_models is None else str(args.map_models),
           "learned_working_point": {"r": ckpts["embedding"]["r"], "k": ckpts["embedding"]["k"],
                                     "filter_cut": ckpts["filter"]["cut"]},
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
