"""The positions-only GNN model set: embedding, filter and GNN for events given as space points.

Without cells there is no cluster shape, so these models read the ``"positions"`` node features
(``taas.gnn.features.FEATURE_SETS``: r, phi, z, eta, cos phi, sin phi). They are trained with
the ordinary training entry point (``taas.gnn.training.train_all``) on simulated ``small``
events whose cells files are left out: ``taas.gnn.data.build_sample`` then forms the space
points from the hits (``taas.reco.hit_spacepoints``), exactly as the pipelines do for such
events, and picks the positions features. The recipe below wrote the shipped files in
``taas/gnn/checkpoints/positions/`` (``docs/spacepoint_input.md``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taas.gnn.checkpoint import install_model_set
from taas.gnn.features import FEATURE_SETS
from taas.gnn.models import EmbeddingConfig, FilterConfig, GNNConfig

if TYPE_CHECKING:
    from taas.gnn.training import TrainingConfig

#: Events of the shipped positions-only models: ``small`` presets, fixed seeds (no benchmark
#: evaluates on them: the benchmarks use seed 11).
POSITIONS_DATA: dict[str, Any] = {"preset": "small", "train_events": 16, "val_events": 4,
                                  "train_seed": 101, "val_seed": 102}


def positions_config() -> TrainingConfig:
    """The training config of the positions-only set: default sizes and schedules with the
    models' input width that of the ``"positions"`` features, GNN validated at 0.3 (the cut of
    the acorn track building). Training is imported here: inference never loads Lightning."""
    from taas.gnn.training import GNNTraining, TrainingConfig

    width = len(FEATURE_SETS["positions"])
    return TrainingConfig(device="cpu", embedding=EmbeddingConfig(n_features=width),
                          filter=FilterConfig(n_features=width),
                          gnn=GNNConfig(n_features=width),
                          gnn_training=GNNTraining(score_cut=0.3))


def drop_cells(events_dir: str | Path, out: str | Path) -> Path:
    """A copy of an event directory without its cells files (links where the filesystem
    allows them): the same events given as space points."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for path in Path(events_dir).iterdir():
        target = out / path.name
        if "-cells." in path.name or target.exists() or not path.is_file():
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    return out


def train_positions(out_dir: str | Path, *, install: bool = False, progress: bool = True,
                    num_threads: int | None = 1) -> dict[str, Any]:
    """Train the positions-only set with ``POSITIONS_DATA`` into ``out_dir``; ``install``
    copies the checkpoints into ``taas/gnn/checkpoints/positions``. Returns the metrics."""
    from taas.gnn.training import simulate_once, train_all

    d, out = POSITIONS_DATA, Path(out_dir)
    train = simulate_once(out / "events" / "train", d["preset"], d["train_events"],
                          d["train_seed"])
    val = simulate_once(out / "events" / "val", d["preset"], d["val_events"], d["val_seed"])
    metrics = train_all(out, events_dir=drop_cells(train, out / "spacepoints" / "train"),
                        val_dir=drop_cells(val, out / "spacepoints" / "val"),
                        config=positions_config(), num_threads=num_threads, progress=progress)
    if install:
        install_model_set(out, "positions")
    return metrics
