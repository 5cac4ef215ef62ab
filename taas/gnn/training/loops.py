"""The three trainings, each on the output of the one before: metric learning with its working
point, the edge filter with its cut, the interaction GNN. The steps run in Lightning
(``taas.gnn.training.lightning``); what is chosen on validation events after training (the
working point, the filter cut, the validation metrics the checkpoints carry) lives here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from taas.gnn.data import GraphSample, radius_graph
from taas.gnn.features import strip_mask
from taas.gnn.models import (
    EdgeFilter,
    EmbeddingMLP,
    InteractionGNN,
    n_parameters,
)
from taas.gnn.training.config import EmbeddingTraining, TrainingConfig
from taas.gnn.training.graphs import (
    GraphCounts,
    TrainingGraph,
    pair_keys,
    phi_sectors,
    to_graph,
)
from taas.gnn.training.lightning import (
    EdgeChunks,
    EdgeClassifierModule,
    EmbeddingModule,
    StageData,
    StepDataset,
    fit,
)
from taas.gnn.training.runtime import resolve_device
from taas.gnn.training.scoring import edge_scores, embed

log = logging.getLogger(__name__)


# --- stage 1: metric learning ---------------------------------------------------------------
def _graph_scan(samples: Sequence[GraphSample], embeddings: Sequence[np.ndarray],
                cfg: EmbeddingTraining) -> dict[tuple[float, int], tuple[int, int, int]]:
    """(r, k) -> (found truth pairs, truth pairs, edges), summed over events, for the grid."""
    r_max, k_max = max(cfg.r_grid), max(cfg.k_grid)
    totals: dict[tuple[float, int], list[int]] = {
        (r, k): [0, 0, 0] for r in cfg.r_grid for k in cfg.k_grid}
    from scipy.spatial import cKDTree

    for s, emb in zip(samples, embeddings, strict=True):
        n = s.n_nodes
        tree = cKDTree(emb.astype(np.float64))
        kq = min(k_max + 1, n)
        dist, idx = tree.query(emb, k=kq, distance_upper_bound=r_max)
        rows = np.repeat(np.arange(n), kq).reshape(n, kq)
        ok = np.isfinite(dist) & (idx != rows) & (idx < n)
        rank = np.cumsum(ok, axis=1)
        ok &= rank <= k_max
        keys = pair_keys(rows[ok], idx[ok], n)
        d, rk = dist[ok], rank[ok]
        order = np.lexsort((rk, keys))  # per pair: the smaller rank of its two directions first
        keys, d, rk = keys[order], d[order], rk[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        keys, d, rk = keys[first], d[first], rk[first]
        is_true = np.isin(keys, pair_keys(s.truth_src, s.truth_dst, n))
        for (r, k), t in totals.items():
            m = (d < r) & (rk <= k)
            t[0] += int((m & is_true).sum())
            t[1] += len(s.truth_src)
            t[2] += int(m.sum())
    return {key: (v[0], v[1], v[2]) for key, v in totals.items()}


def choose_working_point(scan: dict[tuple[float, int], tuple[int, int, int]],
                         target: float) -> tuple[float, int]:
    """The (r, k) with fewest edges whose efficiency reaches ``target`` (else the best one)."""
    eff = {key: f / max(t, 1) for key, (f, t, _) in scan.items()}
    ok = [key for key, e in eff.items() if e >= target]
    if not ok:
        best = max(eff, key=lambda key: (eff[key], -scan[key][2]))
        log.warning("no (r, k) reaches efficiency %.3f; best %.4f at r=%s k=%s", target,
                    eff[best], *best)
        return best
    return min(ok, key=lambda key: (scan[key][2], key[0], key[1]))


def train_embedding(train: Sequence[GraphSample], val: Sequence[GraphSample],
                    config: TrainingConfig, *, progress: bool = True
                    ) -> tuple[EmbeddingMLP, dict[str, Any]]:
    """Train the metric-learning model (``EmbeddingModule``, one event or phi sector per
    step); choose ``(r, k)`` on ``val``; return the model and its metrics."""
    cfg = config.embedding_training
    pl.seed_everything(config.seed, verbose=False)
    model = EmbeddingMLP(config.embedding)
    module = EmbeddingModule(model, cfg, seed=config.seed, processes=config.devices)
    steps = [part for s in train for part in s.phi_sectors(cfg.sectors, cfg.sector_margin)]
    data = StageData(StepDataset(steps), StepDataset(val), seed=config.seed)
    history = fit(module, data, config, epochs=cfg.epochs, clip=None, progress=progress)
    metrics = {**history, **working_point(model, val, config)}
    log.info("metric learning: r=%.3f k=%d %s", metrics["r"], metrics["k"],
             metrics["validation"])
    return model, metrics


def working_point(model: EmbeddingMLP, val: Sequence[GraphSample], config: TrainingConfig
                  ) -> dict[str, Any]:
    """``r``, ``k`` (``choose_working_point`` on ``val``) and the validation metrics there.

    The working point belongs to the event density: an embedding trained on sparse events
    can serve dense ones with a larger ``k`` chosen on dense validation events.
    """
    cfg = config.embedding_training
    device = resolve_device(config.device)
    model.to(device)
    embs = [embed(model, s.x, device) for s in val]
    r, k = choose_working_point(_graph_scan(val, embs, cfg), cfg.target_efficiency)
    counts = GraphCounts()
    for s, emb in zip(val, embs, strict=True):
        src, dst = radius_graph(emb, s.xyz, r, k)
        counts.add(s, src, dst, config.target_pt)
    model.cpu()
    return {"r": r, "k": k, "validation": counts.result(), "n_parameters": n_parameters(model)}


# --- stages 2 and 3: edge classifiers -------------------------------------------------------
def _graphs(samples: Sequence[GraphSample], edges: Sequence[tuple[np.ndarray, np.ndarray]]
            ) -> list[TrainingGraph]:
    """Training graphs on the CPU: the trainer moves each step to its process's device."""
    cpu = torch.device("cpu")
    return [to_graph(s, src, dst, cpu) for s, (src, dst) in zip(samples, edges, strict=True)]


def _train_classifier(model: nn.Module, train: Dataset[TrainingGraph],
                      val: Dataset[TrainingGraph], *, epochs: int, lr: float, pos_weight: float,
                      seed: int, config: TrainingConfig, progress: bool) -> dict[str, Any]:
    """Weighted BCE over the steps of ``train`` (``EdgeClassifierModule``), gradients clipped
    at norm 1; returns the loss histories and the data-parallel record."""
    module = EdgeClassifierModule(model, lr=lr, epochs=epochs, pos_weight=pos_weight, seed=seed,
                                  processes=config.devices)
    return fit(module, StageData(train, val, seed=seed), config, epochs=epochs, clip=1.0,
               progress=progress)


def train_filter(train: Sequence[GraphSample], val: Sequence[GraphSample],
                 train_edges: Sequence[tuple[np.ndarray, np.ndarray]],
                 val_edges: Sequence[tuple[np.ndarray, np.ndarray]], config: TrainingConfig,
                 *, progress: bool = True) -> tuple[EdgeFilter, dict[str, Any]]:
    """Train the edge filter on radius-graph edges (random chunks of at most
    ``max_edges``, one step each); choose its cut on the validation graphs."""
    cfg = config.filter_training
    seed = config.seed + 1
    pl.seed_everything(seed, verbose=False)
    model = EdgeFilter(config.filter)
    history = _train_classifier(
        model, EdgeChunks(_graphs(train, train_edges), cfg.max_edges, seed),
        EdgeChunks(_graphs(val, val_edges), cfg.max_edges, seed), epochs=cfg.epochs, lr=cfg.lr,
        pos_weight=cfg.pos_weight, seed=seed, config=config, progress=progress)
    device = resolve_device(config.device)
    scores = [edge_scores(model.to(device), s.x, src, dst, device)
              for s, (src, dst) in zip(val, val_edges, strict=True)]
    labels = [s.labels(src, dst) for s, (src, dst) in zip(val, val_edges, strict=True)]
    true_scores = np.concatenate([sc[lab] for sc, lab in zip(scores, labels, strict=True)])
    cut = float(np.quantile(true_scores, 1.0 - cfg.target_efficiency)) if len(true_scores) \
        else 0.5
    counts = GraphCounts()
    for s, (src, dst), sc in zip(val, val_edges, scores, strict=True):
        keep = sc > cut
        counts.add(s, src[keep], dst[keep], config.target_pt)
    metrics = {**history, "cut": cut, "validation": counts.result(),
               "n_parameters": n_parameters(model)}
    log.info("edge filter: cut=%.4f %s", cut, metrics["validation"])
    return model.cpu(), metrics


def train_gnn(train: Sequence[GraphSample], val: Sequence[GraphSample],
              train_edges: Sequence[tuple[np.ndarray, np.ndarray]],
              val_edges: Sequence[tuple[np.ndarray, np.ndarray]], config: TrainingConfig,
              *, progress: bool = True) -> tuple[InteractionGNN, dict[str, Any]]:
    """Train the interaction GNN on filtered graphs (``sectors`` phi sectors of each, one
    step each); validate at ``score_cut``."""
    cfg = config.gnn_training
    seed = config.seed + 2
    pl.seed_everything(seed, verbose=False)
    model = InteractionGNN(config.gnn)
    sectors = [part for g in _graphs(train, train_edges)
               for part in phi_sectors(g, cfg.sectors, cfg.sector_margin)]
    history = _train_classifier(model, StepDataset(sectors), StepDataset(_graphs(val, val_edges)),
                                epochs=cfg.epochs, lr=cfg.lr, pos_weight=cfg.pos_weight,
                                seed=seed, config=config, progress=progress)
    device = resolve_device(config.device)
    model.to(device)
    counts = GraphCounts()
    stage_true = stage_kept = 0
    for s, (src, dst) in zip(val, val_edges, strict=True):
        keep = edge_scores(model, s.x, src, dst, device, config.amp,
                           strip=strip_mask(s.module)) > cfg.score_cut
        lab = s.labels(src, dst)
        stage_true += int(lab.sum())
        stage_kept += int((lab & keep).sum())
        counts.add(s, src[keep], dst[keep], config.target_pt)
    metrics = {**history, "cut": cfg.score_cut, "validation": counts.result(),
               "stage_efficiency": stage_kept / max(stage_true, 1),
               "n_parameters": n_parameters(model)}
    log.info("interaction GNN: %s", metrics["validation"])
    return model.cpu(), metrics
