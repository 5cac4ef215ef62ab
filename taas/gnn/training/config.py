"""Training configurations: what each model learns from and how long, and the shipped recipe."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from taas.gnn.checkpoint import (
    plain,
)
from taas.gnn.models import (
    EmbeddingConfig,
    FilterConfig,
    GNNConfig,
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
    """Everything ``train_all`` needs besides the data. ``device="auto"``: CUDA when present.

    ``devices``: data-parallel processes (DDP; gloo on CPUs, NCCL on GPUs: one GPU each), 1
    for none. ``amp``: bf16 mixed precision, on CUDA only (CPUs train in float32).
    """

    seed: int = 0
    device: str = "auto"
    devices: int = 1
    amp: bool = False
    target_pt: float = 1.0
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    gnn: GNNConfig = field(default_factory=GNNConfig)
    embedding_training: EmbeddingTraining = field(default_factory=EmbeddingTraining)
    filter_training: FilterTraining = field(default_factory=FilterTraining)
    gnn_training: GNNTraining = field(default_factory=GNNTraining)

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"TrainingConfig.devices must be >= 1, got {self.devices}")
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"TrainingConfig.device must be 'auto', 'cpu' or 'cuda[:N]', "
                             f"got {self.device!r}")

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
