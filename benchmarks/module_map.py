"""Module-map graph construction (GNN4ITk) next to the shipped metric-learning graph.

Run: ``.venv/bin/python benchmarks/module_map.py --train-samples DIR --eval-samples
small=DIR medium=DIR large=DIR [--margins 0 0.1 0.25] [--min-pt 0.5] [--train-events N]``.

``DIR``s hold cached ``GraphSample`` files (``taas.gnn.data.prepare_samples``); training
events must not be the evaluation events (seed 11 here, as in the other GNN benchmarks). The map
is built from the truth edges of particles above ``--min-pt`` GeV in the training events; for each
margin and each evaluation preset it reports, with event sizes: edges per space point,
efficiency (all truth edges and those of pT > 1 GeV particles), purity, seconds per event of
the map lookup (one thread), and the same after the shipped edge filter (its own cut). The
shipped learned graph (embedding + FRNN, then filter) on the same events is the reference.
Writes ``benchmarks/results/module_map.json``.
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

from taas.gnn.checkpoint import SHIPPED, load_shipped
from taas.gnn.data import GraphSample, load_samples, orient_edges, unique_pairs
from taas.gnn.module_map import QUANTITIES, build_module_map, module_map_graph
from taas.gnn.training import GraphCounts, edge_scores, evaluate

TARGET_PT = 1.0


def training_doublets(samples: list[GraphSample], min_pt: float
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per sample: positions, modules and its truth edges of particles above ``min_pt``."""
    out = []
    for s in samples:
        keep = s.truth_pt() >= min_pt
        out.append((s.xyz, s.module, s.truth_src[keep], s.truth_dst[keep]))
    return out


def evaluate_map(module_map: object, samples: list[GraphSample], filter_ckpt: object) -> dict:
    """Edge metrics of the map's graph, before and after the shipped filter."""
    graph, filtered = GraphCounts(), GraphCounts()
    seconds, filter_seconds = [], []
    for s in samples:
        t0 = time.perf_counter()
        src, dst = module_map_graph(module_map, s.xyz, s.module)
        a, b = orient_edges(*unique_pairs(src, dst, s.n_nodes), s.xyz)
        seconds.append(time.perf_counter() - t0)
        graph.add(s, a, b, TARGET_PT)
        t0 = time.perf_counter()
        keep = edge_scores(filter_ckpt.model, s.x, a, b) > filter_ckpt["cut"]
        filter_seconds.append(time.perf_counter() - t0)
        filtered.add(s, a[keep], b[keep], TARGET_PT)
    return {"graph": graph.result(), "graph_s_per_event": float(np.median(seconds)),
            "filter": filtered.result(), "filter_s_per_event": float(np.median(filter_seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=Path, required=True)
    parser.add_argument("--train-events", type=int, default=None,
                        help="use only the first N training samples (default: all)")
    parser.add_argument("--eval-samples", nargs="+", required=True, metavar="PRESET=DIR")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.1, 0.25])
    parser.add_argument("--min-pt", type=float, default=0.5)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "module_map.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_paths = sorted(args.train_samples.glob("*.npz"))[:args.train_events]
    if not train_paths:
        raise SystemExit(f"no samples in {args.train_samples}")
    t0 = time.perf_counter()
    train = load_samples(train_paths)
    base = build_module_map(training_doublets(train, args.min_pt))
    build_s = time.perf_counter() - t0
    ckpts = {name: load_shipped(name) for name in SHIPPED}
    results = {}
    for spec in args.eval_samples:
        preset, _, directory = spec.partition("=")
        samples = load_samples(sorted(Path(directory).glob("*.npz")))
        learned = evaluate(samples, ckpts, target_pt=TARGET_PT)
        results[preset] = {
            "events": len(samples),
            "spacepoints_per_event": float(np.mean([s.n_nodes for s in samples])),
            "learned": {"graph": learned["graph"], "filter": learned["filter"],
                        "s_per_event_embedding_frnn_filter_gnn": learned["seconds_per_event"]},
            "module_map": {str(m): evaluate_map(base.widened(m), samples, ckpts["filter"])
                           for m in tqdm(args.margins, desc=preset, unit="margin")},
        }
        print(json.dumps({preset: results[preset]}), flush=True)
    out = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": 1,
           "quantities": list(QUANTITIES), "min_pt_gev": args.min_pt,
           "train_samples": str(args.train_samples), "train_events": len(train),
           "module_pairs": len(base), "doublets_per_pair_median": float(
               np.median(base.n_doublets)) if len(base) else 0.0,
           "build_s": build_s, "target_pt_gev": TARGET_PT, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
