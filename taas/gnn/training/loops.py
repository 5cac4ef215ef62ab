"""The training loops: metric learning with its working point, the edge filter, the interaction
GNN, each trained on the output of the one before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from taas.gnn.data import GraphSample, knn_pairs, radius_graph
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
    graph_steps,
    pair_keys,
    phi_sectors,
    to_graph,
)
from taas.gnn.training.runtime import (
    autocast,
    cosine_schedule,
    deterministic,
    progress_bar,
    resolve_device,
)
from taas.gnn.training.scoring import edge_scores, embed

log = logging.getLogger(__name__)


# --- helpers --------------------------------------------------------------------------------
def _hinge_loss(emb: torch.Tensor, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor,
                margin: float, positive_weight: float) -> torch.Tensor:
    """ACORN's pair loss on squared distances: mean d^2 of positive pairs (times
    ``positive_weight``) + mean of ``relu(margin^2 - d^2)`` of negative pairs, averaged
    separately so that the rare positives are not drowned by the negatives."""
    d2 = ((emb[a] - emb[b]) ** 2).sum(-1)
    pos = y > 0.5
    zero = d2.sum() * 0.0
    loss_pos = d2[pos].mean() if bool(pos.any()) else zero
    loss_neg = torch.relu(margin**2 - d2[~pos]).mean() if bool((~pos).any()) else zero
    return positive_weight * loss_pos + loss_neg


def _embedding_pairs(sample: GraphSample, emb: np.ndarray, cfg: EmbeddingTraining,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth pairs (attract), random pairs and current hard neighbours (labelled by truth)."""
    n = sample.n_nodes
    ra = np.repeat(np.arange(n), cfg.n_random)
    rb = rng.integers(0, n, len(ra))
    query = np.flatnonzero(rng.random(n) < cfg.query_fraction)
    qa, qb = knn_pairs(emb, cfg.margin, cfg.knn)
    keep = np.isin(qa, query)
    a = np.concatenate([sample.truth_src, ra, qa[keep]])
    b = np.concatenate([sample.truth_dst, rb, qb[keep]])
    y = sample.labels(a, b)
    # hits of one particle that are not consecutive (a skipped layer) are neither pulled nor
    # pushed: pushing them apart fights the pull of the truth pairs between them
    same = (sample.particle[a] == sample.particle[b]) & (sample.particle[a] != 0)
    ok = (a != b) & (y | ~same)
    return a[ok], b[ok], y[ok].astype(np.float32)


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
    """Train the metric-learning model; choose ``(r, k)``; return the model and its metrics."""
    cfg = config.embedding_training
    device = resolve_device(config.device)
    with deterministic(config.seed) as rng:
        model = EmbeddingMLP(config.embedding).to(device)
        train = [part for s in train for part in s.phi_sectors(cfg.sectors, cfg.sector_margin)]
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        sched = cosine_schedule(opt, cfg.epochs * len(train))
        history = []
        bar = progress_bar(range(cfg.epochs), "metric learning", progress, unit="epoch")
        for _ in bar:
            model.train()
            total = 0.0
            for i in rng.permutation(len(train)):
                s = train[i]
                x = torch.from_numpy(s.x).to(device)
                with torch.no_grad():
                    current = model(x).cpu().numpy()
                a, b, y = _embedding_pairs(s, current, cfg, rng)
                with autocast(device, config.amp):
                    emb = model(x)
                loss = _hinge_loss(emb, torch.from_numpy(a).to(device),
                                   torch.from_numpy(b).to(device), torch.from_numpy(y).to(device),
                                   cfg.margin, cfg.positive_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            history.append(total / len(train))
            bar.set_postfix(loss=f"{history[-1]:.4g}")
    metrics = {"loss_history": history, **working_point(model, val, config)}
    log.info("metric learning: r=%.3f k=%d %s", metrics["r"], metrics["k"],
             metrics["validation"])
    return model.cpu(), metrics


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
def _train_classifier(model: nn.Module, graphs: Sequence[TrainingGraph], *, epochs: int, lr: float,
                      pos_weight: float, max_edges: int | None, config: TrainingConfig,
                      rng: np.random.Generator, desc: str, progress: bool) -> list[float]:
    """Steps of weighted BCE over ``graphs`` (whole graphs, sectors, or edge chunks of at most
    ``max_edges``, see ``graph_steps``), shuffled each epoch; returns the mean loss of each
    epoch."""
    device = resolve_device(config.device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    n_steps = sum(-(-len(g.src) // max_edges) if max_edges else 1 for g in graphs)
    sched = cosine_schedule(opt, epochs * n_steps)
    pw = torch.tensor(pos_weight, device=device)
    history = []
    bar = progress_bar(range(epochs), desc, progress, unit="epoch")
    for _ in bar:
        model.train()
        total, count = 0.0, 0
        for i in rng.permutation(len(graphs)):
            for g in graph_steps(graphs[i], max_edges, rng):
                with autocast(device, config.amp):
                    logits = model(g.x, g.src, g.dst, g.attr)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    logits.float(), g.y, pos_weight=pw, reduction="none")
                loss = (loss.mean() if g.mask is None
                        else (loss * g.mask).sum() / g.mask.sum().clamp(min=1.0))
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                total += loss.item()
                count += 1
        history.append(total / max(count, 1))
        bar.set_postfix(loss=f"{history[-1]:.4g}")
    return history


def _graphs(samples: Sequence[GraphSample], edges: Sequence[tuple[np.ndarray, np.ndarray]],
            device: torch.device) -> list[TrainingGraph]:
    return [to_graph(s, src, dst, device) for s, (src, dst) in zip(samples, edges, strict=True)]


def train_filter(train: Sequence[GraphSample], val: Sequence[GraphSample],
                 train_edges: Sequence[tuple[np.ndarray, np.ndarray]],
                 val_edges: Sequence[tuple[np.ndarray, np.ndarray]], config: TrainingConfig,
                 *, progress: bool = True) -> tuple[EdgeFilter, dict[str, Any]]:
    """Train the edge filter on radius-graph edges; choose its cut on the validation graphs."""
    cfg = config.filter_training
    device = resolve_device(config.device)
    with deterministic(config.seed + 1) as rng:
        model = EdgeFilter(config.filter).to(device)
        history = _train_classifier(model, _graphs(train, train_edges, device), epochs=cfg.epochs,
                                    lr=cfg.lr, pos_weight=cfg.pos_weight,
                                    max_edges=cfg.max_edges, config=config, rng=rng,
                                    desc="edge filter", progress=progress)
    scores = [edge_scores(model, s.x, src, dst, device) for s, (src, dst) in zip(val, val_edges,
                                                                             strict=True)]
    labels = [s.labels(src, dst) for s, (src, dst) in zip(val, val_edges, strict=True)]
    true_scores = np.concatenate([sc[lab] for sc, lab in zip(scores, labels, strict=True)])
    cut = float(np.quantile(true_scores, 1.0 - cfg.target_efficiency)) if len(true_scores) \
        else 0.5
    counts = GraphCounts()
    for s, (src, dst), sc in zip(val, val_edges, scores, strict=True):
        keep = sc > cut
        counts.add(s, src[keep], dst[keep], config.target_pt)
    metrics = {"loss_history": history, "cut": cut, "validation": counts.result(),
               "n_parameters": n_parameters(model)}
    log.info("edge filter: cut=%.4f %s", cut, metrics["validation"])
    return model.cpu(), metrics


def train_gnn(train: Sequence[GraphSample], val: Sequence[GraphSample],
              train_edges: Sequence[tuple[np.ndarray, np.ndarray]],
              val_edges: Sequence[tuple[np.ndarray, np.ndarray]], config: TrainingConfig,
              *, progress: bool = True) -> tuple[InteractionGNN, dict[str, Any]]:
    """Train the interaction GNN on filtered graphs; validate at ``score_cut``."""
    cfg = config.gnn_training
    device = resolve_device(config.device)
    with deterministic(config.seed + 2) as rng:
        model = InteractionGNN(config.gnn).to(device)
        graphs = [part for g in _graphs(train, train_edges, device)
                  for part in phi_sectors(g, cfg.sectors, cfg.sector_margin)]
        history = _train_classifier(model, graphs, epochs=cfg.epochs,
                                    lr=cfg.lr, pos_weight=cfg.pos_weight, max_edges=None,
                                    config=config, rng=rng, desc="interaction GNN",
                                    progress=progress)
    counts = GraphCounts()
    stage_true = stage_kept = 0
    for s, (src, dst) in zip(val, val_edges, strict=True):
        keep = edge_scores(model, s.x, src, dst, device, config.amp) > cfg.score_cut
        lab = s.labels(src, dst)
        stage_true += int(lab.sum())
        stage_kept += int((lab & keep).sum())
        counts.add(s, src[keep], dst[keep], config.target_pt)
    metrics = {"loss_history": history, "cut": cfg.score_cut, "validation": counts.result(),
               "stage_efficiency": stage_kept / max(stage_true, 1),
               "n_parameters": n_parameters(model)}
    log.info("interaction GNN: %s", metrics["validation"])
    return model.cpu(), metrics
