"""Event graphs on the training device, cut into phi sectors or random edge chunks so that a step
on a dense event costs what a step on a small one does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from taas.gnn.data import GraphSample
from taas.gnn.features import edge_features, strip_mask

log = logging.getLogger(__name__)


def pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(a, b).astype(np.int64) * np.int64(n) + np.maximum(a, b)


@dataclass
class TrainingGraph:
    """One event's graph as tensors on the training device."""

    x: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    attr: torch.Tensor
    y: torch.Tensor
    #: per-edge loss weight (None: all edges count); sectors weight their margin edges 0
    mask: torch.Tensor | None = None
    #: per-node bool, True on strip space points (``taas.gnn.features.strip_mask``): what a
    #: heterogeneous GNN picks its node encoder by; other models do not read it
    strip: torch.Tensor | None = None


def to_graph(sample: GraphSample, src: np.ndarray, dst: np.ndarray,
              device: torch.device) -> TrainingGraph:
    x = torch.from_numpy(sample.x).to(device)
    s = torch.from_numpy(np.ascontiguousarray(src, np.int64)).to(device)
    d = torch.from_numpy(np.ascontiguousarray(dst, np.int64)).to(device)
    y = torch.from_numpy(sample.labels(src, dst).astype(np.float32)).to(device)
    strip = torch.from_numpy(strip_mask(sample.module)).to(device)
    return TrainingGraph(x, s, d, edge_features(x, s, d), y, strip=strip)


class GraphCounts:
    """Edge counts summed over events, turned into efficiency / purity at the end."""

    def __init__(self) -> None:
        self.c = dict.fromkeys(("edges", "true", "truth", "found", "target_truth",
                                "target_found", "spacepoints", "events"), 0)

    def add(self, sample: GraphSample, src: np.ndarray, dst: np.ndarray, target_pt: float
            ) -> None:
        n = sample.n_nodes
        keys = pair_keys(src, dst, n)
        tkeys = pair_keys(sample.truth_src, sample.truth_dst, n)
        is_true = np.isin(keys, tkeys)
        found = np.isin(tkeys, keys[is_true])
        target = sample.truth_pt() > target_pt
        for k, v in (("edges", len(keys)), ("true", is_true.sum()), ("truth", len(tkeys)),
                     ("found", found.sum()), ("target_truth", target.sum()),
                     ("target_found", found[target].sum()), ("spacepoints", n), ("events", 1)):
            self.c[k] += int(v)

    def result(self) -> dict[str, float]:
        c = self.c
        return {
            "efficiency": c["found"] / max(c["truth"], 1),
            "purity": c["true"] / max(c["edges"], 1),
            "target_efficiency": c["target_found"] / max(c["target_truth"], 1),
            "edges_per_spacepoint": c["edges"] / max(c["spacepoints"], 1),
            "edges_per_event": c["edges"] / max(c["events"], 1),
            "spacepoints_per_event": c["spacepoints"] / max(c["events"], 1),
            "truth_edges_per_event": c["truth"] / max(c["events"], 1),
        }


def phi_sectors(g: TrainingGraph, sectors: int, margin: float) -> list[TrainingGraph]:
    """``g`` cut into ``sectors`` phi slices (see ``GNNTraining``); 1 sector: ``[g]``.

    A node's sector is that of its ``phi`` (node feature 1, ``phi / pi`` in [-1, 1]); a slice
    holds the nodes within ``margin`` of its sector (and the far ends of its own edges) and the
    edges between them, relabelled; ``mask`` marks the edges whose source lies in the sector
    itself, so each edge counts in exactly one sector.
    """
    if sectors <= 1:
        return [g]
    phi = g.x[:, 1]
    width = 2.0 / sectors
    home = torch.clamp(((phi + 1.0) / width).long(), 0, sectors - 1)
    out = []
    for j in range(sectors):
        centre = -1.0 + width * (j + 0.5)
        off = torch.remainder(phi - centre + 1.0, 2.0) - 1.0
        inside = (off.abs() <= width / 2 + margin) | (home == j)
        inside[g.dst[home[g.src] == j]] = True  # every edge of the sector, however long
        edge = inside[g.src] & inside[g.dst]
        if not bool(edge.any()):
            continue
        new_id = torch.cumsum(inside.long(), 0) - 1
        core = (home[g.src] == j)[edge]
        out.append(TrainingGraph(g.x[inside], new_id[g.src[edge]], new_id[g.dst[edge]],
                                 g.attr[edge], g.y[edge], core.float(),
                                 None if g.strip is None else g.strip[inside]))
    return out
