"""Timings of the GNN pipeline's non-learned parts: FRNN graph building and track building.

Run: ``.venv/bin/python benchmarks/gnn_components.py``; writes
``benchmarks/results/gnn_components.json``. Median of ``--repeat`` runs after one warm-up.

* FRNN: ``frnn_cpu`` (scipy k-d tree) against ``frnn_torch`` (cell list) on the CPU device, and
  on CUDA when present, for 6k / 50k / 200k points (small / medium / large events). 3D: uniform
  points, radius for ~20 neighbours on average. 12D: an embedding-like cloud, clusters of 10
  points (one per "particle") around uniform centres, as metric learning produces.
* Track building: both stages and both methods on a synthetic GNN output: 20k tracks x 10
  layers (200k nodes), true edges along tracks plus fakes to neighbouring tracks (~400k edges
  in all), scores drawn from Beta(8, 1) for true and Beta(1, 8) for fake edges.

Synthetic data is used because the timing depends on graph size and shape, not on physics; the
inputs are stated beside every time.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from backends.cpu.track_building import CpuTrackBuilding
from backends.gpu.track_building import GpuTrackBuilding
from taas.edm import Edges, Spacepoints
from taas.gnn.frnn import frnn_cpu, frnn_torch
from taas.gnn.track_building import TrackBuildingConfig

log = logging.getLogger("benchmarks.gnn_components")


def timed(fn: Callable[[], object], repeat: int, sync: bool = False) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def frnn_points(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, float, int]:
    """Points, radius and k of one FRNN case."""
    if d == 3:
        r = (20 / (n * 4 / 3 * math.pi)) ** (1 / 3)
        return rng.random((n, 3)).astype(np.float32), r, 64
    centres = rng.random((n // 10, d))
    x = np.repeat(centres, 10, axis=0) + rng.normal(0, 0.02, (n // 10 * 10, d))
    return x.astype(np.float32), 0.1, 50


def bench_frnn(sizes: list[int], repeat: int) -> list[dict]:
    rng = np.random.default_rng(11)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for d in (3, 12):
        for n in sizes:
            x, r, k = frnn_points(n, d, rng)
            src, _ = frnn_cpu(x, r, k)
            row = {"n_points": n, "dim": d, "r": r, "k": k, "n_edges": len(src),
                   "frnn_cpu_kdtree_s": timed(lambda x=x, r=r, k=k: frnn_cpu(x, r, k), repeat)}
            for dev in devices:
                xt = torch.from_numpy(x).to(dev)
                row[f"frnn_torch_{dev}_s"] = timed(
                    lambda xt=xt, r=r, k=k: frnn_torch(xt, r, k), repeat, sync=dev == "cuda")
                assert len(frnn_torch(xt, r, k)[0]) == len(src)
            log.info("frnn %s", row)
            rows.append(row)
    return rows


def synthetic_gnn_event(n_tracks: int, layers: int, fake_per_node: float,
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Edges + space points of a synthetic scored graph (see the module docstring)."""
    n = n_tracks * layers
    node = np.arange(n).reshape(n_tracks, layers)
    t_true = np.repeat(np.arange(n_tracks), layers - 1)
    l_true = np.tile(np.arange(layers - 1), n_tracks)
    n_fake = int(fake_per_node * n)
    t_fake = rng.integers(0, n_tracks, n_fake)
    l_fake = rng.integers(0, layers - 1, n_fake)
    other = (t_fake + rng.integers(1, 4, n_fake)) % n_tracks
    src = np.concatenate([node[t_true, l_true], node[t_fake, l_fake]])
    dst = np.concatenate([node[t_true, l_true + 1], node[other, l_fake + 1]])
    score = np.concatenate([rng.beta(8, 1, len(t_true)), rng.beta(1, 8, n_fake)])
    perm = rng.permutation(n)
    r = np.tile(np.arange(1.0, layers + 1) * 30, n_tracks) + rng.normal(0, 0.5, n)
    r_perm = np.empty(n)
    r_perm[perm] = r
    zeros = np.zeros(n)
    sps = Spacepoints(measurement_index=np.arange(n), x=r_perm, y=zeros, z=zeros, r=r_perm,
                      phi=zeros, eta=zeros)
    edges = Edges(src=perm[src], dst=perm[dst], score=score)
    return {**edges.to_tensors(), **sps.to_tensors()}


def bench_track_building(repeat: int) -> list[dict]:
    rng = np.random.default_rng(12)
    event = synthetic_gnn_event(20_000, 10, 1.1, rng)
    n_nodes, n_edges = len(event["spacepoints.r"]), len(event["edges.src"])
    rows = []
    for method in ("cc", "walkthrough"):
        config = TrackBuildingConfig(method=method)
        for cls in (CpuTrackBuilding, GpuTrackBuilding):
            stage = cls(None, config)
            out = stage.run(event)
            row = {"stage": stage.qualified_name, "device": stage.device, "method": method,
                   "n_nodes": n_nodes, "n_edges": n_edges,
                   "n_tracks": len(out["prototracks.offsets"]) - 1,
                   "s_per_event": timed(lambda s=stage: s.run(event), repeat,
                                        sync=stage.torch_device.type == "cuda")}
            log.info("track building %s", row)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6_000, 50_000, 200_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "gnn_components.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = {
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg(),
        "frnn": bench_frnn(args.sizes, args.repeat),
        "track_building": bench_track_building(args.repeat),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
