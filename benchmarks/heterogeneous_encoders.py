"""Heterogeneous node encoders (pixel / strip) against the homogeneous interaction GNN.

Run: ``.venv/bin/python benchmarks/heterogeneous_encoders.py [--work DIR] [--train-events 8]
[--val-events 3] [--epochs 20]``.

Why: the ExaTrkX team gave the ITk strips their own encoders, since strip clusters are long
and locate the hit only coarsely along the strip; ``GNNConfig.heterogeneous`` does the same
for the node encoder (``taas.gnn.models.InteractionGNN``). This measures whether it helps here.

Only the GNN stage trains: the graphs are the shipped embedding's radius graphs of ``small``
events, cut by the shipped filter, so both variants see identical edges. Training events use
seed 61 (no shipped model trained on them), evaluation events seed 11 (the benchmarks' seed);
the latter also give ``train_gnn``'s per-epoch validation loss, which only records (nothing is
selected on it). Both variants train with the shipped GNN recipe (``shipped_config()``: hidden
64, 6 recurrent iterations, 8 phi sectors, lr 3e-3) and the same seed, epochs and data; from
the same seed their shared blocks start with the same weights (the strip encoder is drawn
last), so they differ by the strip encoder alone.

Reported per variant at score cut 0.3 (the shipped cut), over the evaluation events, split by
the edge's detector types (pixel-pixel, mixed, strip-strip; ``taas.gnn.features.strip_mask``):

* ``efficiency``: truth edges of particles with pT > 1 GeV kept after the GNN / all such truth
  edges (graph construction, filter and GNN together);
* ``gnn_efficiency``: the same over the pT > 1 GeV truth edges the filtered graph holds (the
  GNN's own loss);
* ``purity``: kept edges that are truth edges (any pT) / kept edges;

plus parameter counts, training time and the event sizes. A fixed cut compares two score
scales, so ``at_matched_efficiency`` also gives the heterogeneous model's per-class efficiency
and purity at the cut where its overall efficiency equals the homogeneous model's at 0.3. The
trained GNNs are kept as checkpoints in ``--work``. Writes
``benchmarks/results/heterogeneous_encoders.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_ddp import Edges, samples_of, shipped_graphs

from taas.gnn.checkpoint import save_checkpoint
from taas.gnn.data import GraphSample
from taas.gnn.features import strip_mask
from taas.gnn.models import InteractionGNN, n_parameters
from taas.gnn.training import (
    edge_scores,
    pair_keys,
    shipped_config,
    simulate_once,
    train_gnn,
)

TRAIN_SEED = 61
EVAL_SEED = 11
SCORE_CUT = 0.3
TARGET_PT = 1.0
CLASSES = ("pixel_pixel", "mixed", "strip_strip")


def edge_class(strip: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """0 pixel-pixel, 1 mixed, 2 strip-strip, per edge."""
    return strip[src].astype(np.int64) + strip[dst].astype(np.int64)


class ClassCounts:
    """Edge counts per detector-type class, summed over events."""

    def __init__(self) -> None:
        keys = ("target_truth", "target_in_graph", "target_kept", "kept", "true_kept",
                "graph_edges")
        self.c = {name: dict.fromkeys(keys, 0) for name in (*CLASSES, "all")}

    def add(self, sample: GraphSample, src: np.ndarray, dst: np.ndarray, keep: np.ndarray
            ) -> None:
        n = sample.n_nodes
        strip = strip_mask(sample.module)
        target = sample.truth_pt() > TARGET_PT
        t_src, t_dst = sample.truth_src[target], sample.truth_dst[target]
        t_keys = pair_keys(t_src, t_dst, n)
        t_cls = edge_class(strip, t_src, t_dst)
        g_cls = edge_class(strip, src, dst)
        in_graph = np.isin(t_keys, pair_keys(src, dst, n))
        kept = np.isin(t_keys, pair_keys(src[keep], dst[keep], n))
        true = sample.labels(src, dst)
        for name, sel_t, sel_g in (*((c, t_cls == i, g_cls == i) for i, c in enumerate(CLASSES)),
                                   ("all", np.ones_like(t_cls, bool), np.ones_like(g_cls, bool))):
            c = self.c[name]
            c["target_truth"] += int(sel_t.sum())
            c["target_in_graph"] += int((sel_t & in_graph).sum())
            c["target_kept"] += int((sel_t & kept).sum())
            c["graph_edges"] += int(sel_g.sum())
            c["kept"] += int((sel_g & keep).sum())
            c["true_kept"] += int((sel_g & keep & true).sum())

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, c in self.c.items():
            out[name] = {
                "efficiency": c["target_kept"] / max(c["target_truth"], 1),
                "gnn_efficiency": c["target_kept"] / max(c["target_in_graph"], 1),
                "filtered_graph_efficiency": c["target_in_graph"] / max(c["target_truth"], 1),
                "purity": c["true_kept"] / max(c["kept"], 1),
                **{k: float(v) for k, v in c.items()}}
        return out


def _scores(model: InteractionGNN, samples: list[GraphSample], edges: Edges
            ) -> tuple[list[np.ndarray], float]:
    """GNN scores of every evaluation edge, and the inference seconds per event."""
    t0 = time.perf_counter()
    scores = [edge_scores(model, s.x, src, dst, strip=strip_mask(s.module))
              for s, (src, dst) in zip(samples, edges, strict=True)]
    return scores, (time.perf_counter() - t0) / max(len(samples), 1)


def _per_class(samples: list[GraphSample], edges: Edges, scores: list[np.ndarray], cut: float
               ) -> dict[str, dict[str, float]]:
    counts = ClassCounts()
    for s, (src, dst), sc in zip(samples, edges, scores, strict=True):
        counts.add(s, src, dst, sc > cut)
    return counts.result()


def _cut_for_efficiency(samples: list[GraphSample], edges: Edges, scores: list[np.ndarray],
                        efficiency: float) -> float:
    """The highest cut at which the overall pT > 1 GeV efficiency reaches ``efficiency``
    (graph edges are unique unordered pairs, so each truth edge has at most one score)."""
    target_scores, total = [], 0
    for s, (src, dst), sc in zip(samples, edges, scores, strict=True):
        n = s.n_nodes
        target = s.truth_pt() > TARGET_PT
        t_keys = pair_keys(s.truth_src[target], s.truth_dst[target], n)
        g_keys = pair_keys(src, dst, n)
        total += len(t_keys)
        if len(g_keys) == 0:
            continue
        order = np.argsort(g_keys)
        pos = np.minimum(np.searchsorted(g_keys[order], t_keys), len(order) - 1)
        found = g_keys[order][pos] == t_keys
        target_scores.append(sc[order][pos][found])
    ranked = np.sort(np.concatenate([np.zeros(0, np.float32), *target_scores]))[::-1]
    need = int(np.ceil(efficiency * total - 1e-9))
    if need <= 0:
        return 1.0
    if need > len(ranked):
        return 0.0
    return float(np.nextafter(np.float32(ranked[need - 1]), np.float32(-1.0)))


def _sizes(samples: list[GraphSample], graphs: Edges, filtered: Edges) -> dict[str, Any]:
    strip = [strip_mask(s.module) for s in samples]
    cls = np.concatenate([np.bincount(edge_class(m, a, b), minlength=3)[None]
                          for m, (a, b) in zip(strip, filtered, strict=True)]).sum(0)
    return {"events": len(samples),
            "spacepoints_per_event": float(np.mean([s.n_nodes for s in samples])),
            "strip_fraction_of_spacepoints": float(np.mean(np.concatenate(strip))),
            "graph_edges_per_event": float(np.mean([len(a) for a, _ in graphs])),
            "filtered_edges_per_event": float(np.mean([len(a) for a, _ in filtered])),
            "filtered_edges_by_class": dict(zip(CLASSES, (int(v) for v in cls), strict=True)),
            "truth_edges_per_event": float(np.mean([len(s.truth_src) for s in samples]))}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/heterogeneous_encoders"))
    parser.add_argument("--train-events", type=int, default=8)
    parser.add_argument("--val-events", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. why a budget)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results"
                        / "heterogeneous_encoders.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()

    train = samples_of(simulate_once(args.work / "events" / "train", "small", args.train_events,
                                     TRAIN_SEED), args.work / "samples" / "train")
    val = samples_of(simulate_once(args.work / "events" / "eval", "small", args.val_events,
                                   EVAL_SEED), args.work / "samples" / "eval")
    train_g, train_f = shipped_graphs(train)
    val_g, val_f = shipped_graphs(val)
    prep_s = time.perf_counter() - t_start

    base = shipped_config()
    results: dict[str, Any] = {}
    scores: dict[str, list[np.ndarray]] = {}
    for name, heterogeneous in (("homogeneous", False), ("heterogeneous", True)):
        config = dataclasses.replace(
            base, gnn=dataclasses.replace(base.gnn, heterogeneous=heterogeneous),
            gnn_training=dataclasses.replace(base.gnn_training, epochs=args.epochs,
                                             score_cut=SCORE_CUT))
        t0 = time.perf_counter()
        model, metrics = train_gnn(train, val, train_f, val_f, config, progress=False)
        train_s = time.perf_counter() - t0
        save_checkpoint(args.work / f"gnn_{name}.pt", model, kind="gnn",
                        metadata={"cut": SCORE_CUT, "metrics": metrics})
        scores[name], inference_s = _scores(model, val, val_f)
        results[name] = {
            "gnn_config": config.gnn.to_dict(),
            "n_parameters": n_parameters(model),
            "epochs": args.epochs,
            "training_wall_s": train_s,
            "epoch_seconds": metrics["epoch_seconds"],
            "epoch_cpu_seconds": metrics["epoch_cpu_seconds"],
            "loss_history": metrics["loss_history"],
            "val_loss_history": metrics["val_loss_history"],
            "train_gnn_validation": metrics["validation"],
            "inference_s_per_event": inference_s,
            "per_class": _per_class(val, val_f, scores[name], SCORE_CUT)}
        print(json.dumps({name: {k: results[name][k] for k in
                                 ("n_parameters", "training_wall_s", "per_class")}}), flush=True)

    hom, het = results["homogeneous"]["per_class"], results["heterogeneous"]["per_class"]
    delta = {c: {m: het[c][m] - hom[c][m] for m in ("efficiency", "gnn_efficiency", "purity")}
             for c in (*CLASSES, "all")}
    # a fixed cut compares two score scales: also compare at equal overall efficiency
    matched_cut = _cut_for_efficiency(val, val_f, scores["heterogeneous"],
                                      hom["all"]["efficiency"])
    matched = _per_class(val, val_f, scores["heterogeneous"], matched_cut)
    at_matched = {
        "what": ("the heterogeneous model at the cut where its overall pT>1 GeV efficiency "
                 "reaches the homogeneous model's at 0.3; per class minus the homogeneous "
                 "model at 0.3"),
        "heterogeneous_cut": matched_cut,
        "heterogeneous_per_class": matched,
        "heterogeneous_minus_homogeneous": {
            c: {m: matched[c][m] - hom[c][m] for m in ("efficiency", "purity")}
            for c in (*CLASSES, "all")}}
    out = {
        "benchmark": "heterogeneous_encoders", "preset": "small",
        "seeds": {"train_events": TRAIN_SEED, "eval_events": EVAL_SEED,
                  "training": base.seed + 2},
        "score_cut": SCORE_CUT, "target_pt_gev": TARGET_PT,
        "graphs": "shipped embedding (r, k from its checkpoint) + shipped filter (its cut)",
        "recipe": {"gnn_training": dataclasses.asdict(
            dataclasses.replace(base.gnn_training, epochs=args.epochs, score_cut=SCORE_CUT))},
        "event_sizes": {"train": _sizes(train, train_g, train_f),
                        "eval": _sizes(val, val_g, val_f)},
        "results": results, "heterogeneous_minus_homogeneous": delta,
        "at_matched_efficiency": at_matched,
        "definitions": {
            "efficiency": "pT>1 GeV truth edges kept after the GNN / all pT>1 GeV truth edges "
                          "of the class (graph + filter + GNN)",
            "gnn_efficiency": "pT>1 GeV truth edges kept / those in the filtered graph",
            "purity": "kept edges that are truth edges (any pT) / kept edges",
            "classes": "by the strip mask of the edge's two space points (volumes 12-14, "
                       "16-18 strips; 7-9 pixels)"},
        "budget_note": (f"{args.epochs} epochs on {len(train)} small events (the shipped GNN: "
                        "27 epochs on 8 medium events), sized to fit ~20 minutes on one "
                        "thread of a shared two-core machine; one training seed per variant, "
                        "so differences of the order of seed noise are not significant. "
                        + args.note).strip(),
        "preparation_s": prep_s, "total_wall_s": time.perf_counter() - t_start,
        "device": "cpu, 1 torch thread", "cpu_cores": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "machine": platform.platform(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
