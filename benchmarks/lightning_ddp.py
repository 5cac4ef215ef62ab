"""Data-parallel training on Lightning: one process against two (DDP, gloo) on ``small`` events.

Run: ``.venv/bin/python benchmarks/lightning_ddp.py [--work DIR] [--train-events 6]
[--val-events 2] [--epochs 8] [--devices 1 2]``.

The edge filter and the interaction GNN of the shipped recipe (``shipped_config()``: filter
64 x 4 with 50k-edge chunks, GNN on 8 phi sectors) train for ``--epochs`` epochs on the shipped
embedding's graphs of ``small`` events (train seed 51, validation seed 52, simulated unless given;
no shipped model trained on them), once per process count. The GNN of every run trains on the
same filtered graphs (the shipped filter's), so the runs differ only in their process count.
Reported per run: seconds per epoch (rank 0, validation loss included; the first epoch apart, it
holds Lightning's warm-up), wall time of the whole fit (process start-up included), optimiser
steps per epoch, the validation loss of each epoch and the validation metrics at the stage's cut,
and whether all ranks ended with the same weights.

On this machine the processes share two CPU cores with other work, so two processes are not
expected to be faster: the figures show the cost of DDP (start-up, gradient all-reduce) and the
metrics of both (``NOTE``: at equal epochs two processes take half the optimiser steps).
The one-process time per training edge also gives the estimated time of
``taas train --reproduce-shipped`` (``reproduce_shipped_estimate``, scaled to the edges of the
recipe's ``medium`` events). Writes ``benchmarks/results/lightning_ddp.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taas.gnn.checkpoint import load_shipped
from taas.gnn.data import GraphSample, load_samples, prepare_samples, radius_graph
from taas.gnn.training import (
    SHIPPED_DATA,
    edge_scores,
    embed,
    shipped_config,
    simulate_once,
    train_filter,
    train_gnn,
)

Edges = list[tuple[np.ndarray, np.ndarray]]

NOTE = ("the processes share the machine's 2 CPU cores with other jobs (load average ~12): no "
        "speed-up is expected from 2 processes, and wall times follow the load (a process's "
        "share of the cores grows with the number of processes): rank 0's CPU time per epoch "
        "halves with 2 processes, as each takes half the steps. At a fixed number of epochs two "
        "processes take half the optimiser steps (two graphs per step, lr unchanged), so after "
        "a few epochs they lag one process; trained to the plateau (tests/gnn/"
        "test_lightning_training.py: 40 epochs on tiny events) they agree within seed noise")


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def samples_of(directory: Path, cache: Path) -> list[GraphSample]:
    """The GNN training samples of the events in ``directory`` (prepared once into ``cache``)."""
    return load_samples(prepare_samples(directory, cache, progress=False))


def shipped_graphs(samples: list[GraphSample]) -> tuple[Edges, Edges]:
    """Per sample, the shipped embedding's radius graph and the edges the shipped filter keeps
    of it: what the filter and the GNN are trained on."""
    emb, filt = load_shipped("embedding"), load_shipped("filter")
    graphs: Edges = [radius_graph(embed(emb.model, s.x), s.xyz, emb["r"], emb["k"])  # type: ignore[arg-type]
                     for s in samples]
    filtered: Edges = []
    for s, (src, dst) in zip(samples, graphs, strict=True):
        keep = edge_scores(filt.model, s.x, src, dst) > filt["cut"]
        filtered.append((src[keep], dst[keep]))
    return graphs, filtered


def _run(stage: str, devices: int, epochs: int, train: list[GraphSample],
         val: list[GraphSample], train_edges: Edges, val_edges: Edges) -> dict[str, Any]:
    base = shipped_config()
    config = dataclasses.replace(
        base, devices=devices,
        filter_training=dataclasses.replace(base.filter_training, epochs=epochs),
        gnn_training=dataclasses.replace(base.gnn_training, epochs=epochs))
    os.environ["MASTER_PORT"] = _free_port()
    trainer = train_filter if stage == "filter" else train_gnn
    t0 = time.perf_counter()
    _, metrics = trainer(train, val, train_edges, val_edges, config, progress=False)
    wall = time.perf_counter() - t0
    seconds = metrics["epoch_seconds"]
    steps = (sum(-(-len(s) // base.filter_training.max_edges) for s, _ in train_edges)
             if stage == "filter" else len(train) * base.gnn_training.sectors)
    cpu = metrics["epoch_cpu_seconds"]
    per_epoch = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
    cpu_per_epoch = float(np.mean(cpu[1:])) if len(cpu) > 1 else cpu[0]
    return {"devices": devices, "epochs": epochs, "steps_per_epoch_all_ranks": steps,
            "optimiser_steps_per_epoch": -(-steps // devices),
            "seconds_per_epoch": per_epoch, "epoch_seconds": seconds, "fit_wall_s": wall,
            "cpu_seconds_per_epoch_rank0": cpu_per_epoch, "epoch_cpu_seconds_rank0": cpu,
            "seconds_per_optimiser_step": per_epoch / -(-steps // devices),
            "val_loss_history": metrics["val_loss_history"], "cut": metrics["cut"],
            "validation": metrics["validation"], "data_parallel": metrics["data_parallel"]}


def _estimate(results: dict[str, list[dict[str, Any]]], sizes: dict[str, float]
              ) -> dict[str, Any]:
    """Minutes of the shipped recipe's filter and GNN on one process, scaled from the time per
    training edge measured here (``small``) to the edges of its ``medium`` events."""
    cfg = shipped_config()
    events = SHIPPED_DATA["train_events"]
    # edges per medium event: the shipped radius graph and filtered graph (their checkpoints'
    # validation records: 1,297,367 and 164,176)
    medium_graph, medium_filtered = 1.297e6, 1.64e5
    edges = {"filter": sizes["graph_edges_per_event"] * sizes["train_events"],
             "gnn": sizes["filtered_edges_per_event"] * sizes["train_events"]}
    medium = {"filter": medium_graph * events * cfg.filter_training.epochs,
              "gnn": medium_filtered * events * cfg.gnn_training.epochs}
    out: dict[str, Any] = {}
    for clock, key in (("wall", "seconds_per_epoch"), ("cpu", "cpu_seconds_per_epoch_rank0")):
        for stage in ("filter", "gnn"):
            per_edge = results[stage][0][key] / edges[stage]
            out[f"{stage}_{clock}_min"] = per_edge * medium[stage] / 60
    return {**out,
            "assumptions": (f"one process, one thread; time linear in the edges of a step "
                            f"({events} medium events: filter {cfg.filter_training.epochs} "
                            f"epochs over 1.30M radius-graph edges per event, GNN "
                            f"{cfg.gnn_training.epochs} epochs over 164k filtered edges per "
                            "event, phi-sector margins as here); measured under this machine's "
                            "load (see load_average_at_end); the embedding (12 epochs x 40 small "
                            "events; 2 min in the shipped run), sample preparation and event "
                            "simulation come on top")}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/lightning_ddp"))
    parser.add_argument("--train-events", type=int, default=6)
    parser.add_argument("--val-events", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "lightning_ddp.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = samples_of(simulate_once(args.work / "events" / "train", "small", args.train_events,
                                     51), args.work / "samples" / "train")
    val = samples_of(simulate_once(args.work / "events" / "val", "small", args.val_events, 52),
                     args.work / "samples" / "val")
    train_g, train_f = shipped_graphs(train)
    val_g, val_f = shipped_graphs(val)
    results: dict[str, list[dict[str, Any]]] = {"filter": [], "gnn": []}
    for devices in args.devices:
        results["filter"].append(_run("filter", devices, args.epochs, train, val, train_g, val_g))
        print(json.dumps({"filter": results["filter"][-1]}), flush=True)
        results["gnn"].append(_run("gnn", devices, args.epochs, train, val, train_f, val_f))
        print(json.dumps({"gnn": results["gnn"][-1]}), flush=True)

    sizes = {"train_events": len(train), "val_events": len(val),
             "spacepoints_per_event": float(np.mean([s.n_nodes for s in train])),
             "graph_edges_per_event": float(np.mean([len(s) for s, _ in train_g])),
             "filtered_edges_per_event": float(np.mean([len(s) for s, _ in train_f]))}
    out = {"benchmark": "lightning_ddp", "preset": "small", "seeds": {"train": 51, "val": 52},
           "event_sizes": sizes, "device": "cpu (gloo between processes)",
           "cpu_cores": os.cpu_count(), "load_average_at_end": os.getloadavg(),
           "machine": platform.platform(), "torch": torch.__version__,
           "lightning": __import__("lightning").__version__,
           "note": NOTE,
           "results": results}
    if args.devices[0] == 1:
        out["reproduce_shipped_estimate"] = _estimate(results, sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
