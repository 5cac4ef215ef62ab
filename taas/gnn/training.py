"""Training of the GNN pipeline: metric learning -> edge filter -> interaction GNN, in sequence.

Each stage is trained on the output of the previous one, as in Exa.TrkX / ACORN (Ju et al.
2021, "Performance of a geometric deep learning pipeline for HL-LHC particle tracking"):

1. **Metric learning** (``EmbeddingMLP``): a hinge loss on pairs pulls truth-consecutive hits
   together and pushes random and hard-negative pairs (current neighbours in the embedding that
   are not truth pairs) beyond a margin. The working point ``(r, k)`` of the radius graph is then
   chosen on validation events: the fewest edges that keep ``target_efficiency`` of all truth
   edges.
2. **Edge filter** (``EdgeFilter``) on the radius graph's edges, weighted BCE; its cut keeps
   ``target_efficiency`` of the true edges of the validation graphs.
3. **Interaction GNN** on the filtered graphs, BCE; validated at ``GNNTraining.score_cut``
   (0.5 by default; the shipped models: 0.3, the cut the acorn track building uses).

Dense events: the working point depends on the density (more neighbours per hit), so it is
chosen on validation events of the density the models serve; an embedding trained on ``small``
events can be given to ``train_all(embedding=...)``, which keeps its weights and chooses ``(r,
k)`` on its own (e.g. ``medium``) validation events. Filter and GNN train on the dense graphs in
pieces: the filter on random edge chunks (``FilterTraining.max_edges``), the GNN on phi sectors
with a margin (``GNNTraining.sectors``), so a step costs what a ``small`` event costs while the
graphs have the density of the events they will see. The shipped recipe
(``reproduce_shipped``, ``SHIPPED_DATA``, ``shipped_config``) does exactly that.

Everything is seeded (torch, numpy) and runs with deterministic algorithms, so the same data and
config give the same weights on the same device. Defaults train on two CPU cores in minutes from
a few dozen ``small`` events; ``TrainingConfig.gpu_size()`` gives ACORN-size models and longer
schedules for a GPU (there, with a few hundred ``medium`` events, ``sectors`` and ``max_edges``
can stay at whole events).

Metrics are counted over all validation events together: *efficiency* = truth edges present in
the graph / truth edges (``taas.metrics.graph``), *purity* = true graph edges / graph edges,
*target efficiency* the same over truth edges of particles above ``target_pt``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from taas.gnn.checkpoint import (
    Checkpoint,
    load_checkpoint,
    plain,
    save_checkpoint,
    shipped_path,
)
from taas.gnn.data import GraphSample, knn_pairs, load_samples, prepare_samples, radius_graph
from taas.gnn.features import edge_features
from taas.gnn.inference import embed_nodes, filter_chunk, gnn_logits
from taas.gnn.models import (
    EdgeFilter,
    EmbeddingConfig,
    EmbeddingMLP,
    FilterConfig,
    GNNConfig,
    InteractionGNN,
    n_parameters,
)

log = logging.getLogger(__name__)


# --- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingTraining:
    """Metric learning. ACORN's TrackML example: margin = r_train 0.1, knn 50, lr 1e-3.

    ``n_random``: random negative pairs per node and step; ``knn``: hard-negative neighbours
    per query node, from ``query_fraction`` of the nodes; ``positive_weight`` scales the
    attraction term. ``r_grid``/``k_grid``: working points tried for the radius graph.
    ``sectors``: steps on phi slices of each event, widened by ``sector_margin`` (units of
    pi), instead of whole events (``GraphSample.phi_sectors``): dense events give many small
    steps, with the hard negatives of their own density.
    """

    epochs: int = 12
    lr: float = 1e-2
    margin: float = 0.1
    n_random: int = 8
    knn: int = 32
    query_fraction: float = 0.5
    positive_weight: float = 2.0
    target_efficiency: float = 0.99
    r_grid: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(1, 26))
    k_grid: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64, 128)
    sectors: int = 1
    sector_margin: float = 0.05


@dataclass(frozen=True)
class FilterTraining:
    """Edge filter. ``pos_weight`` weights true edges in the BCE (ACORN weights signal edges);
    a graph with more than ``max_edges`` edges is split into random chunks of at most that
    many, one optimiser step each (every edge is seen once per epoch); the cut keeps
    ``target_efficiency``."""

    epochs: int = 10
    lr: float = 2e-3
    pos_weight: float = 2.0
    max_edges: int = 400_000
    target_efficiency: float = 0.995


@dataclass(frozen=True)
class GNNTraining:
    """Interaction GNN. ACORN: lr 1e-3, BCE, edge_cut 0.5.

    ``sectors``: each training graph is cut into this many phi sectors, one optimiser step
    each: a sector holds the nodes within ``sector_margin`` (units of pi) of it, and the loss
    counts only edges whose source node lies in the sector proper, so every edge is trained
    once per epoch and sees (nearly) its full neighbourhood, at the event's own density. Smaller
    steps than whole ``medium`` events (more updates per epoch, a fraction of the memory).
    """

    epochs: int = 16
    lr: float = 2e-3
    pos_weight: float = 1.0
    score_cut: float = 0.5
    sectors: int = 1
    sector_margin: float = 0.05


@dataclass(frozen=True)
class TrainingConfig:
    """Everything ``train_all`` needs besides the data. ``device="auto"``: CUDA when present."""

    seed: int = 0
    device: str = "auto"
    amp: bool = False
    target_pt: float = 1.0
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    gnn: GNNConfig = field(default_factory=GNNConfig)
    embedding_training: EmbeddingTraining = field(default_factory=EmbeddingTraining)
    filter_training: FilterTraining = field(default_factory=FilterTraining)
    gnn_training: GNNTraining = field(default_factory=GNNTraining)

    @classmethod
    def gpu_size(cls) -> TrainingConfig:
        """ACORN-size models and longer schedules, for a GPU and a few hundred events."""
        return cls(amp=True, embedding=EmbeddingConfig.gpu_size(), filter=FilterConfig.gpu_size(),
                   gnn=GNNConfig.gpu_size(),
                   embedding_training=EmbeddingTraining(epochs=100, lr=1e-3, knn=50),
                   filter_training=FilterTraining(epochs=50, lr=1e-3),
                   gnn_training=GNNTraining(epochs=100, lr=1e-3))

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


#: What the shipped checkpoints are trained on. The embedding learns on ``small`` events
#: (``"embedding"``; on ``medium`` ones the hinge loss drowns in hard negatives and the graph
#: gets worse for the same CPU time); its working point ``(r, k)``, the filter and the GNN are
#: fitted on ``medium`` events, the density the targets are set at. Validation uses
#: ``train_seed + 1``. The benchmarks evaluate on seed 11, which no training set uses.
SHIPPED_DATA: dict[str, Any] = {
    "preset": "medium", "train_events": 8, "val_events": 2, "train_seed": 31, "val_seed": 32,
    "embedding": {"preset": "small", "train_events": 40, "val_events": 10, "train_seed": 1,
                  "val_seed": 2},
}


def shipped_config() -> TrainingConfig:
    """The training config of the shipped filter and GNN (and of the embedding's working
    point): CPU, a slimmer filter (the ``medium`` radius graph has ~1.3M edges per event),
    edge chunks for the filter, phi sectors for the GNN. GNN: 8 events x 27 epochs beat
    6 x 36 at the same cost (validation edge efficiency at cut 0.5: 0.980 vs 0.978; 6 x 24:
    0.973). Its ``score_cut`` 0.3 is the highest cut that keeps >= 0.98 of the truth edges
    on the validation events with a margin (0.4: 0.981, 0.3: 0.982, purity 0.990), and the
    ``score_cut``/``walk_min`` of the acorn track building (``taas.pipeline.spec.ACORN``)."""
    return TrainingConfig(
        device="cpu", filter=FilterConfig(hidden=64, n_layers=4),
        embedding_training=EmbeddingTraining(target_efficiency=0.992),
        filter_training=FilterTraining(epochs=12, lr=4e-3, max_edges=50_000),
        gnn_training=GNNTraining(epochs=27, lr=3e-3, score_cut=0.3, sectors=8))


# --- helpers --------------------------------------------------------------------------------
def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[np.random.Generator]:
    """Seed torch and give a numpy generator; deterministic algorithms inside, restored after."""
    torch.manual_seed(seed)
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield np.random.default_rng(seed)
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(a, b).astype(np.int64) * np.int64(n) + np.maximum(a, b)


@dataclass
class _Graph:
    """One event's graph as tensors on the training device."""

    x: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    attr: torch.Tensor
    y: torch.Tensor
    #: per-edge loss weight (None: all edges count); sectors weight their margin edges 0
    mask: torch.Tensor | None = None


def _to_graph(sample: GraphSample, src: np.ndarray, dst: np.ndarray,
              device: torch.device) -> _Graph:
    x = torch.from_numpy(sample.x).to(device)
    s = torch.from_numpy(np.ascontiguousarray(src, np.int64)).to(device)
    d = torch.from_numpy(np.ascontiguousarray(dst, np.int64)).to(device)
    y = torch.from_numpy(sample.labels(src, dst).astype(np.float32)).to(device)
    return _Graph(x, s, d, edge_features(x, s, d), y)


class GraphCounts:
    """Edge counts summed over events, turned into efficiency / purity at the end."""

    def __init__(self) -> None:
        self.c = dict.fromkeys(("edges", "true", "truth", "found", "target_truth",
                                "target_found", "spacepoints", "events"), 0)

    def add(self, sample: GraphSample, src: np.ndarray, dst: np.ndarray, target_pt: float
            ) -> None:
        n = sample.n_nodes
        keys = _pair_keys(src, dst, n)
        tkeys = _pair_keys(sample.truth_src, sample.truth_dst, n)
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


def phi_sectors(g: _Graph, sectors: int, margin: float) -> list[_Graph]:
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
        out.append(_Graph(g.x[inside], new_id[g.src[edge]], new_id[g.dst[edge]], g.attr[edge],
                          g.y[edge], core.float()))
    return out


def _steps(g: _Graph, max_edges: int | None, rng: np.random.Generator) -> list[_Graph]:
    """``g`` as one step, or (more than ``max_edges`` edges) random edge chunks, one each."""
    n = len(g.src)
    if max_edges is None or n <= max_edges:
        return [g]
    perm = torch.from_numpy(rng.permutation(n)).to(g.src.device)
    return [_Graph(g.x, g.src[sel], g.dst[sel], g.attr[sel], g.y[sel],
                   None if g.mask is None else g.mask[sel])
            for sel in perm.split(max_edges)]


def _progress(iterable: Any, desc: str, progress: bool, **kw: Any) -> Any:
    return tqdm(iterable, desc=desc, disable=not progress, leave=False, **kw)


def _cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1),
                                                      eta_min=optimizer.param_groups[0]["lr"] / 20)


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
                device: torch.device | str = "cpu", amp: bool = False) -> np.ndarray:
    """Sigmoid scores of edges ``src -> dst`` from an ``EdgeFilter`` or ``InteractionGNN``,
    computed as the inference stages do (``taas.gnn.inference``)."""
    model.eval()
    dev = torch.device(device)
    xt = torch.from_numpy(x).to(dev)
    s = torch.from_numpy(np.ascontiguousarray(src, np.int64)).to(dev)
    d = torch.from_numpy(np.ascontiguousarray(dst, np.int64)).to(dev)
    with _autocast(dev, amp):
        attr = edge_features(xt, s, d)
        chunk = filter_chunk(dev)
        if isinstance(model, InteractionGNN):
            logits = gnn_logits(model, xt, s, d, attr)
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
    gs = edge_scores(gnn, sample.x, src, dst, device)
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
    counts = {stage: GraphCounts() for stage in ("graph", "filter", "gnn")}
    t0 = time.perf_counter()
    for s in samples:
        out = score_event(s, e.model, f.model, g.model, r=e["r"], k=e["k"],
                          filter_cut=f["cut"], gnn_cut=g["cut"], device=device)
        for stage, (src, dst, _) in out.items():
            counts[stage].add(s, src, dst, target_pt)
    result: dict[str, Any] = {stage: c.result() for stage, c in counts.items()}
    result["seconds_per_event"] = (time.perf_counter() - t0) / max(len(samples), 1)
    return result


# --- stage 1: metric learning ---------------------------------------------------------------
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
        keys = _pair_keys(rows[ok], idx[ok], n)
        d, rk = dist[ok], rank[ok]
        order = np.lexsort((rk, keys))  # per pair: the smaller rank of its two directions first
        keys, d, rk = keys[order], d[order], rk[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        keys, d, rk = keys[first], d[first], rk[first]
        is_true = np.isin(keys, _pair_keys(s.truth_src, s.truth_dst, n))
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
        sched = _cosine(opt, cfg.epochs * len(train))
        history = []
        bar = _progress(range(cfg.epochs), "metric learning", progress, unit="epoch")
        for _ in bar:
            model.train()
            total = 0.0
            for i in rng.permutation(len(train)):
                s = train[i]
                x = torch.from_numpy(s.x).to(device)
                with torch.no_grad():
                    current = model(x).cpu().numpy()
                a, b, y = _embedding_pairs(s, current, cfg, rng)
                with _autocast(device, config.amp):
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
def _train_classifier(model: nn.Module, graphs: Sequence[_Graph], *, epochs: int, lr: float,
                      pos_weight: float, max_edges: int | None, config: TrainingConfig,
                      rng: np.random.Generator, desc: str, progress: bool) -> list[float]:
    """Steps of weighted BCE over ``graphs`` (whole graphs, sectors, or edge chunks of at most
    ``max_edges``, see ``_steps``), shuffled each epoch; returns the mean loss of each epoch."""
    device = resolve_device(config.device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    n_steps = sum(-(-len(g.src) // max_edges) if max_edges else 1 for g in graphs)
    sched = _cosine(opt, epochs * n_steps)
    pw = torch.tensor(pos_weight, device=device)
    history = []
    bar = _progress(range(epochs), desc, progress, unit="epoch")
    for _ in bar:
        model.train()
        total, count = 0.0, 0
        for i in rng.permutation(len(graphs)):
            for g in _steps(graphs[i], max_edges, rng):
                with _autocast(device, config.amp):
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
            device: torch.device) -> list[_Graph]:
    return [_to_graph(s, src, dst, device) for s, (src, dst) in zip(samples, edges, strict=True)]


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


# --- the whole chain ------------------------------------------------------------------------
def simulate_once(out: Path, preset: str, events: int, seed: int) -> Path:
    """``events`` events of ``preset`` with ``seed`` in ``out``, simulated unless already
    there (a training run resumed, or one reusing another's events)."""
    from taas.events.presets import get_preset
    from taas.events.simulation import simulate

    if (out / "dataset.json").exists():
        return out
    p = get_preset(preset)
    return simulate(out, events=events, vertices=p.vertices,
                    particles_per_vertex=p.particles_per_vertex, seed=seed, progress=False)


def train_all(out_dir: str | Path, *, events_dir: str | Path | None = None,
              val_dir: str | Path | None = None, preset: str = "small", train_events: int = 40,
              val_events: int = 10, seed: int = 1, config: TrainingConfig | None = None,
              embedding: str | Path | None = None, only_embedding: bool = False,
              num_threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train embedding, filter and GNN in sequence; write checkpoints and ``metrics.json``.

    Data: ``events_dir`` (and optionally ``val_dir``; without it the last fifth of
    ``events_dir`` validates), or, when ``events_dir`` is None, ``train_events`` + ``val_events``
    freshly simulated ``preset`` events (seeds ``seed`` and ``seed + 1``) under
    ``out_dir/events``. Checkpoints land in ``out_dir`` as ``embedding.pt``, ``filter.pt``,
    ``gnn.pt``. Returns the metrics (also written to ``out_dir/metrics.json``).
    ``embedding``: an embedding checkpoint to use instead of training one; its weights are
    kept and its working point ``(r, k)`` is chosen again on this data's validation events
    (``working_point``): how the shipped models use an embedding learnt on ``small`` events
    for ``medium`` ones. ``only_embedding``: stop after the embedding (no filter, no GNN).
    ``num_threads`` sets torch's CPU threads for the call (1 is fastest on a busy machine: small
    per-event kernels gain little from threads and suffer badly from oversubscription).
    """
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train_all(out_dir, events_dir=events_dir, val_dir=val_dir, preset=preset,
                          train_events=train_events, val_events=val_events, seed=seed,
                          config=config or TrainingConfig(), embedding=embedding,
                          only_embedding=only_embedding, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _load_data(out: Path, *, events_dir: str | Path | None, val_dir: str | Path | None,
               preset: str, train_events: int, val_events: int, seed: int, progress: bool
               ) -> tuple[list[GraphSample], list[GraphSample], dict[str, Any]]:
    """Training and validation samples (simulated under ``out/events`` when no
    ``events_dir``) and a description of them."""
    data: dict[str, Any]
    if events_dir is None:
        events_dir = simulate_once(out / "events" / "train", preset, train_events, seed)
        val_dir = simulate_once(out / "events" / "val", preset, val_events, seed + 1)
        data = {"preset": preset, "train_events": train_events, "val_events": val_events,
                "train_seed": seed, "val_seed": seed + 1}
    else:
        data = {"events_dir": str(events_dir), "val_dir": None if val_dir is None
                else str(val_dir)}
    train_paths = prepare_samples(events_dir, out / "samples" / "train", progress=progress)
    if val_dir is not None:
        val_paths = prepare_samples(val_dir, out / "samples" / "val", progress=progress)
    else:
        n_val = max(1, len(train_paths) // 5)
        if len(train_paths) < 2:
            raise ValueError("need at least two events to split off validation")
        train_paths, val_paths = train_paths[:-n_val], train_paths[-n_val:]
    return load_samples(train_paths), load_samples(val_paths), data


def _embedding(embedding: str | Path | None, train: Sequence[GraphSample],
               val: Sequence[GraphSample], config: TrainingConfig, common: dict[str, Any],
               out: Path, *, progress: bool) -> tuple[EmbeddingMLP, dict[str, Any]]:
    """Train the embedding, or take the checkpoint ``embedding`` and choose its working point
    on ``val``; write ``out/embedding.pt``."""
    meta = dict(common)
    if embedding is None:
        model, metrics = train_embedding(train, val, config, progress=progress)
    else:
        given = load_checkpoint(embedding)
        model = given.model  # type: ignore[assignment]
        metrics = {"loss_history": given["metrics"]["loss_history"],
                   "trained_on": given["data"],
                   "trained_validation": given["metrics"]["validation"],
                   **working_point(model, val, config)}
        meta.update(training_config=given["training_config"],
                    data={**common["data"], "embedding": given["data"]})
        log.info("embedding from %s: r=%.3f k=%d %s", embedding, metrics["r"], metrics["k"],
                 metrics["validation"])
    save_checkpoint(out / "embedding.pt", model, kind="embedding",
                    metadata={**meta, "r": metrics["r"], "k": metrics["k"], "metrics": metrics})
    return model, metrics


def _train_all(out_dir: str | Path, *, events_dir: str | Path | None,
               val_dir: str | Path | None, preset: str, train_events: int, val_events: int,
               seed: int, config: TrainingConfig, embedding: str | Path | None,
               only_embedding: bool, progress: bool) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train, val, data = _load_data(out, events_dir=events_dir, val_dir=val_dir, preset=preset,
                                  train_events=train_events, val_events=val_events, seed=seed,
                                  progress=progress)
    device = resolve_device(config.device)
    timing: dict[str, float] = {}
    common = {"training_config": config.to_dict(), "data": data, "device": str(device),
              "torch": str(torch.__version__)}

    t0 = time.perf_counter()
    emb_model, m_emb = _embedding(embedding, train, val, config, common, out,
                                  progress=progress)
    r, k = m_emb["r"], m_emb["k"]
    timing["embedding_s"] = time.perf_counter() - t0
    if only_embedding:
        metrics = {"embedding": m_emb, "timing": timing, "data": data, "device": str(device)}
        (out / "metrics.json").write_text(json.dumps(plain(metrics), indent=1))
        return metrics

    emb_model.to(device)

    def graphs(samples: Sequence[GraphSample]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [radius_graph(embed(emb_model, s.x, device), s.xyz, r, k) for s in samples]

    t0 = time.perf_counter()
    train_graph, val_graph = graphs(train), graphs(val)
    emb_model.cpu()
    timing["radius_graphs_s"] = time.perf_counter() - t0
    edge_metrics = train_edge_models(out, train, val, train_graph, val_graph, config,
                                     metadata=common, progress=progress)
    timing.update(edge_metrics.pop("timing"))
    timing["total_s"] = time.perf_counter() - t_start
    metrics = {"embedding": m_emb, **edge_metrics, "timing": timing, "data": data,
               "device": str(device), "torch_threads": torch.get_num_threads()}
    (out / "metrics.json").write_text(json.dumps(plain(metrics), indent=1))
    return metrics


def train_edge_models(out_dir: str | Path, train: Sequence[GraphSample],
                      val: Sequence[GraphSample],
                      train_graphs: Sequence[tuple[np.ndarray, np.ndarray]],
                      val_graphs: Sequence[tuple[np.ndarray, np.ndarray]],
                      config: TrainingConfig, *, metadata: dict[str, Any] | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Train the edge filter on the given graphs of ``train`` (its cut on those of ``val``),
    then the GNN on the filtered graphs; write ``filter.pt`` and ``gnn.pt`` into ``out_dir``.

    The graphs are ``(src, dst)`` per sample: the embedding's radius graphs in ``train_all``,
    or any other graph builder's (``benchmarks/module_map.py`` trains on module-map graphs).
    Returns ``{"filter": ..., "gnn": ..., "timing": {"filter_s", "gnn_s"}}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata or {})
    device = resolve_device(config.device)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    filt, m_filt = train_filter(train, val, train_graphs, val_graphs, config, progress=progress)
    timing["filter_s"] = time.perf_counter() - t0
    save_checkpoint(out / "filter.pt", filt, kind="filter",
                    metadata={**meta, "cut": m_filt["cut"], "metrics": m_filt})

    t0 = time.perf_counter()
    filt.to(device)

    def filtered(samples: Sequence[GraphSample], edges: Sequence[tuple[np.ndarray, np.ndarray]]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        out_edges = []
        for s, (src, dst) in zip(samples, edges, strict=True):
            keep = edge_scores(filt, s.x, src, dst, device) > m_filt["cut"]
            out_edges.append((src[keep], dst[keep]))
        return out_edges

    train_filtered, val_filtered = filtered(train, train_graphs), filtered(val, val_graphs)
    filt.cpu()
    gnn, m_gnn = train_gnn(train, val, train_filtered, val_filtered, config, progress=progress)
    timing["gnn_s"] = time.perf_counter() - t0
    save_checkpoint(out / "gnn.pt", gnn, kind="gnn",
                    metadata={**meta, "cut": m_gnn["cut"], "metrics": m_gnn})
    return {"filter": m_filt, "gnn": m_gnn, "timing": timing}


def reproduce_shipped(out_dir: str | Path, *, install: bool = False, progress: bool = True,
                      num_threads: int | None = 1) -> dict[str, Any]:
    """Retrain the shipped checkpoints with the shipped settings (``SHIPPED_DATA``).

    Simulates the same events (same seeds); trains the embedding with ``TrainingConfig()`` on
    the ``small`` events (``out_dir/embedding``), then chooses its working point and trains
    filter and GNN with ``shipped_config()`` on the ``medium`` events (``out_dir``). With
    ``install=True`` copies ``embedding.pt``, ``filter.pt``, ``gnn.pt`` over the shipped ones.
    Same device, same library versions -> same weights (the shipped ones: CPU, one thread,
    about 31 minutes on a two-core machine with both cores busy: embedding 2, filter 4.5,
    GNN 24; the embedding is bit-identical to the one ``train_all``'s ``small`` defaults give,
    and ``metrics.json`` records the time of each stage). On a GPU, ``TrainingConfig.gpu_size()``
    with more ``medium`` events and epochs is the way to bigger models.
    """
    d, e = SHIPPED_DATA, SHIPPED_DATA["embedding"]
    out = Path(out_dir)
    t0 = time.perf_counter()
    first = train_all(out / "embedding", preset=str(e["preset"]),
                      train_events=int(e["train_events"]), val_events=int(e["val_events"]),
                      seed=int(e["train_seed"]), config=TrainingConfig(device="cpu"),
                      only_embedding=True, num_threads=num_threads, progress=progress)
    metrics = train_all(out, preset=str(d["preset"]), train_events=int(d["train_events"]),
                        val_events=int(d["val_events"]), seed=int(d["train_seed"]),
                        config=shipped_config(), embedding=out / "embedding" / "embedding.pt",
                        num_threads=num_threads, progress=progress)
    metrics["timing"]["embedding_training_s"] = first["timing"]["embedding_s"]
    metrics["timing"]["reproduce_total_s"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(plain(metrics), indent=1))
    if install:
        for name in ("embedding", "filter", "gnn"):
            shutil.copyfile(out / f"{name}.pt", shipped_path(name))
    return metrics
