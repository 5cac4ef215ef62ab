"""Inference for validation and benchmarks, run exactly as the stages run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from taas.gnn.checkpoint import (
    Checkpoint,
)
from taas.gnn.data import GraphSample, radius_graph
from taas.gnn.features import edge_features, strip_mask
from taas.gnn.inference import embed_nodes, filter_chunk, gnn_logits
from taas.gnn.models import (
    EdgeFilter,
    EmbeddingMLP,
    InteractionGNN,
)
from taas.gnn.training.graphs import GraphCounts
from taas.gnn.training.runtime import autocast

log = logging.getLogger(__name__)


# --- inference (validation and benchmarks; run as the stages run it) -------------------------
@torch.no_grad()
def embed(model: EmbeddingMLP, x: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Embedding of node features ``x`` as a float32 numpy array, run as the graph
    construction stage runs it (``taas.gnn.inference.embed_nodes``)."""
    model.eval()
    emb = embed_nodes(model, torch.from_numpy(x).to(torch.device(device)))
    return emb.float().cpu().numpy()


@torch.no_grad()
def edge_scores(model: nn.Module, x: np.ndarray, src: np.ndarray, dst: np.ndarray,
                device: torch.device | str = "cpu", amp: bool = False, *,
                strip: np.ndarray | None = None) -> np.ndarray:
    """Sigmoid scores of edges ``src -> dst`` from an ``EdgeFilter`` or ``InteractionGNN``,
    computed as the inference stages do (``taas.gnn.inference``). ``strip``: per-node strip
    mask (``taas.gnn.features.strip_mask``), needed by a heterogeneous GNN only."""
    model.eval()
    dev = torch.device(device)
    xt = torch.from_numpy(x).to(dev)
    s = torch.from_numpy(np.ascontiguousarray(src, np.int64)).to(dev)
    d = torch.from_numpy(np.ascontiguousarray(dst, np.int64)).to(dev)
    with autocast(dev, amp):
        attr = edge_features(xt, s, d)
        chunk = filter_chunk(dev)
        if isinstance(model, InteractionGNN):
            st = None if strip is None else torch.from_numpy(np.asarray(strip, bool)).to(dev)
            logits = gnn_logits(model, xt, s, d, attr, strip=st)
        elif len(s) > chunk:
            logits = torch.cat([model(xt, s[i:i + chunk], d[i:i + chunk], attr[i:i + chunk])
                                for i in range(0, len(s), chunk)])
        else:
            logits = model(xt, s, d, attr)
    return torch.sigmoid(logits.float()).cpu().numpy()


def score_event(sample: GraphSample, embedding: EmbeddingMLP, filt: EdgeFilter,
                gnn: InteractionGNN, *, r: float, k: int, filter_cut: float,
                gnn_cut: float = 0.5, device: torch.device | str = "cpu"
                ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The edges after each stage: ``{"graph", "filter", "gnn"}`` -> ``(src, dst, score)``."""
    src, dst = radius_graph(embed(embedding, sample.x, device), sample.xyz, r, k)
    out = {"graph": (src, dst, np.ones(len(src), np.float32))}
    fs = edge_scores(filt, sample.x, src, dst, device)
    keep = fs > filter_cut
    src, dst = src[keep], dst[keep]
    gs = edge_scores(gnn, sample.x, src, dst, device, strip=strip_mask(sample.module))
    out["filter"] = (src, dst, fs[keep])
    keep = gs > gnn_cut
    out["gnn"] = (src[keep], dst[keep], gs[keep])
    return out


def evaluate(samples: Sequence[GraphSample], checkpoints: dict[str, Checkpoint], *,
             target_pt: float = 1.0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Edge efficiency / purity after graph construction, filter and GNN on ``samples``.

    ``checkpoints`` maps ``"embedding"``, ``"filter"``, ``"gnn"`` to loaded checkpoints, whose
    metadata gives the working points (``r``, ``k``, filter ``cut``, GNN ``cut``).
    """
    e, f, g = checkpoints["embedding"], checkpoints["filter"], checkpoints["gnn"]
    embedding, filt, gnn = e.model, f.model, g.model
    if not (isinstance(embedding, EmbeddingMLP) and isinstance(filt, EdgeFilter)
            and isinstance(gnn, InteractionGNN)):
        raise TypeError(f"checkpoints hold {[type(m).__name__ for m in (embedding, filt, gnn)]}"
                        ", expected an embedding, a filter and a GNN")
    counts = {stage: GraphCounts() for stage in ("graph", "filter", "gnn")}
    t0 = time.perf_counter()
    for s in samples:
        out = score_event(s, embedding, filt, gnn, r=e["r"], k=e["k"],
                          filter_cut=f["cut"], gnn_cut=g["cut"], device=device)
        for stage, (src, dst, _) in out.items():
            counts[stage].add(s, src, dst, target_pt)
    result: dict[str, Any] = {stage: c.result() for stage, c in counts.items()}
    result["seconds_per_event"] = (time.perf_counter() - t0) / max(len(samples), 1)
    return result


# --- stage 1: metric learning ---------------------------------------------------------------
