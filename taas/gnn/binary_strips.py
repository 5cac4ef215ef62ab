"""The binary-strips GNN model set: the cell-feature models trained on binary strip readout.

TrackML's strip volumes (and the ATLAS ITk strips' ABCStar chips) report only that a strip
fired: every strip cell reads 1.0, so a strip cluster's ``charge`` node feature is its cell
count (1-2), where the default analog simulation gives summed path lengths (~0.3). Models
trained on analog strips misread such events (``benchmarks/trackml_real_data.py``). This set
keeps the ``"cells"`` features and the default model sizes, and trains on ``small`` events
simulated with ``strip_readout="binary"`` (``taas.events.simulation.simulate``); the pipeline
picks it for events whose strip cells all read 1.0 (``taas.pipeline.reconstruct``). The recipe
below wrote ``taas/gnn/checkpoints/binary_strips/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taas.gnn.checkpoint import SHIPPED, load_checkpoint, save_checkpoint, shipped_dir

if TYPE_CHECKING:
    from taas.gnn.training import TrainingConfig

#: Events of the shipped binary-strips models: ``small`` presets with binary strips, seeds
#: apart from the benchmarks' 11 and the other sets' (1, 2, 31, 32; 101, 102).
BINARY_STRIPS_DATA: dict[str, Any] = {"preset": "small", "train_events": 16, "val_events": 4,
                                      "train_seed": 201, "val_seed": 202,
                                      "strip_readout": "binary"}


def binary_strips_config(*, embedding_epochs: int | None = None,
                         filter_epochs: int | None = None,
                         gnn_epochs: int | None = None) -> TrainingConfig:
    """The training config of the binary-strips set: default sizes and schedules on the
    ``"cells"`` features, GNN validated at 0.3 (the cut of the acorn track building); an
    epoch count given replaces that stage's default (a shorter schedule on a busy machine)."""
    from taas.gnn.training import GNNTraining, TrainingConfig

    config = TrainingConfig(device="cpu", gnn_training=GNNTraining(score_cut=0.3))
    for stage, epochs in (("embedding_training", embedding_epochs),
                          ("filter_training", filter_epochs), ("gnn_training", gnn_epochs)):
        if epochs is not None:
            config = replace(config, **{stage: replace(getattr(config, stage), epochs=epochs)})
    return config


def _simulate_binary(out: Path, events: int, seed: int) -> Path:
    """``events`` binary-strip ``small`` events with ``seed`` in ``out`` unless already there."""
    from taas.events.presets import get_preset
    from taas.events.simulation import check_simulated, simulate

    p = get_preset(BINARY_STRIPS_DATA["preset"])
    want = {"seed": seed, "vertices": p.vertices, "particles_per_vertex": p.particles_per_vertex,
            "strip_readout": "binary"}
    if (out / "dataset.json").exists():
        return check_simulated(out, want, min_events=events)
    return simulate(out, events=events, vertices=p.vertices,
                    particles_per_vertex=p.particles_per_vertex, seed=seed,
                    strip_readout="binary", progress=False)


def train_binary_strips(out_dir: str | Path, *, install: bool = False, progress: bool = True,
                        num_threads: int | None = 1,
                        config: TrainingConfig | None = None) -> dict[str, Any]:
    """Train the binary-strips set with ``BINARY_STRIPS_DATA`` into ``out_dir``; ``install``
    copies the checkpoints into ``taas/gnn/checkpoints/binary_strips``. The checkpoints and
    ``metrics.json`` describe their data by ``BINARY_STRIPS_DATA`` (no local paths).
    Returns the metrics."""
    from taas.gnn.training import train_all

    d, out = BINARY_STRIPS_DATA, Path(out_dir)
    train = _simulate_binary(out / "events" / "train", d["train_events"], d["train_seed"])
    val = _simulate_binary(out / "events" / "val", d["val_events"], d["val_seed"])
    metrics = train_all(out, events_dir=train, val_dir=val,
                        config=config or binary_strips_config(), num_threads=num_threads,
                        progress=progress)
    metrics["data"] = dict(d)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    for name in SHIPPED:
        ckpt = load_checkpoint(out / f"{name}.pt")
        save_checkpoint(out / f"{name}.pt", ckpt.model, kind=ckpt.kind,
                        metadata={**ckpt.metadata, "data": dict(d)})
    if install:
        target = shipped_dir("binary_strips")
        target.mkdir(parents=True, exist_ok=True)
        for name in (*SHIPPED, "metrics.json"):
            ext = "" if name.endswith(".json") else ".pt"
            shutil.copyfile(out / f"{name}{ext}", target / f"{name}{ext}")
    return metrics
