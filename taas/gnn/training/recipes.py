"""The whole chain: data, the three trainings in sequence, checkpoints, the shipped recipe."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taas.gnn.checkpoint import (
    load_checkpoint,
    plain,
    save_checkpoint,
    shipped_path,
)
from taas.gnn.data import GraphSample, load_samples, prepare_samples, radius_graph
from taas.gnn.models import (
    EmbeddingMLP,
)
from taas.gnn.training.config import SHIPPED_DATA, TrainingConfig, shipped_config
from taas.gnn.training.loops import (
    train_embedding,
    train_filter,
    train_gnn,
    working_point,
)
from taas.gnn.training.runtime import resolve_device
from taas.gnn.training.scoring import edge_scores, embed

log = logging.getLogger(__name__)


# --- the whole chain ------------------------------------------------------------------------
def simulate_once(out: Path, preset: str, events: int, seed: int, *,
                  strip_readout: str = "analog") -> Path:
    """``events`` events of ``preset`` with ``seed`` (and ``strip_readout`` strips) in
    ``out``, simulated unless already there (a training run resumed, or one reusing another's
    events)."""
    from taas.events.presets import get_preset
    from taas.events.simulation import simulate

    if (out / "dataset.json").exists():
        return out
    p = get_preset(preset)
    return simulate(out, events=events, vertices=p.vertices,
                    particles_per_vertex=p.particles_per_vertex, seed=seed,
                    strip_readout=strip_readout, progress=False)


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
        metrics: dict[str, Any] = {"embedding": m_emb, "timing": timing, "data": data,
                                   "device": str(device)}
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
                      num_threads: int | None = 1, devices: int = 1) -> dict[str, Any]:
    """Retrain the shipped checkpoints with the shipped settings (``SHIPPED_DATA``).

    Simulates the same events (same seeds); trains the embedding with ``TrainingConfig()`` on
    the ``small`` events (``out_dir/embedding``), then chooses its working point and trains
    filter and GNN with ``shipped_config()`` on the ``medium`` events (``out_dir``). Writes only
    under ``out_dir``; ``install=True`` then copies ``embedding.pt``, ``filter.pt``, ``gnn.pt``
    over the shipped ones. ``devices`` > 1 trains data-parallel on that many CPU processes:
    ``devices`` graphs per step and 1/``devices`` of the steps per epoch, so the recipe at
    another batch size (1, the default, is the shipped one).

    Same events, seeds, hyperparameters and schedules as the shipped files; same device,
    process count and library versions -> same weights run to run. The shipped files were
    written by the hand-written loops this package had before Lightning; Lightning draws the
    shuffles, edge chunks and embedding pairs from other (seeded) streams, so a rerun gives
    other weights of the same recipe, whose validation metrics (``metrics.json``) are to be
    compared with the ones the shipped checkpoints carry. The shipped run took about 31
    minutes on a two-core machine with both cores busy (embedding 2, filter 4.5, GNN 24); on
    Lightning, ``benchmarks/results/lightning_ddp.json`` estimates filter 15 and GNN 105 minutes
    on this machine under load (7 and 51 minutes of CPU time), from its measured time per
    training edge on ``small`` events. On a GPU, ``TrainingConfig.gpu_size()`` with more
    ``medium`` events and epochs is the way to bigger models.
    """
    d, e = SHIPPED_DATA, SHIPPED_DATA["embedding"]
    out = Path(out_dir)
    t0 = time.perf_counter()
    first = train_all(out / "embedding", preset=str(e["preset"]),
                      train_events=int(e["train_events"]), val_events=int(e["val_events"]),
                      seed=int(e["train_seed"]),
                      config=TrainingConfig(device="cpu", devices=devices),
                      only_embedding=True, num_threads=num_threads, progress=progress)
    metrics = train_all(out, preset=str(d["preset"]), train_events=int(d["train_events"]),
                        val_events=int(d["val_events"]), seed=int(d["train_seed"]),
                        config=replace(shipped_config(), devices=devices),
                        embedding=out / "embedding" / "embedding.pt",
                        num_threads=num_threads, progress=progress)
    metrics["timing"]["embedding_training_s"] = first["timing"]["embedding_s"]
    metrics["timing"]["reproduce_total_s"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(plain(metrics), indent=1))
    if install:
        for name in ("embedding", "filter", "gnn"):
            shutil.copyfile(out / f"{name}.pt", shipped_path(name))
    return metrics
