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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taas.gnn.checkpoint import SHIPPED, install_model_set, load_checkpoint, save_checkpoint

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


def train_binary_strips(out_dir: str | Path, *, install: bool = False, progress: bool = True,
                        num_threads: int | None = 1,
                        config: TrainingConfig | None = None) -> dict[str, Any]:
    """Train the binary-strips set with ``BINARY_STRIPS_DATA`` into ``out_dir``; ``install``
    copies the checkpoints into ``taas/gnn/checkpoints/binary_strips``. The checkpoints and
    ``metrics.json`` describe their data by ``BINARY_STRIPS_DATA`` (no local paths).
    Returns the metrics."""
    from taas.gnn.training import simulate_once, train_all

    d, out = BINARY_STRIPS_DATA, Path(out_dir)
    train = simulate_once(out / "events" / "train", d["preset"], d["train_events"],
                          d["train_seed"], strip_readout="binary")
    val = simulate_once(out / "events" / "val", d["preset"], d["val_events"], d["val_seed"],
                        strip_readout="binary")
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
        install_model_set(out, "binary_strips")
    return metrics
