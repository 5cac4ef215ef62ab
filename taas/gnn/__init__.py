"""GNN track finding, ACORN / Exa.TrkX style (Ju et al. 2021; github.com/GNN4ITkTeam/acorn).

Pipeline: node features (``features``) -> metric-learning embedding + fixed-radius neighbours
(graph construction) -> edge filter -> interaction GNN -> track building. Models are plain torch
MLP blocks plus index-based aggregation (``models``), so the same blocks also go through hls4ml
for the FPGA path. ``data`` builds training samples from simulated events, ``training`` trains
the three models in sequence, ``checkpoint`` saves/loads self-describing weights; trained
weights ship in ``taas/gnn/checkpoints`` (``load_shipped``).

Submodules that pull in heavier dependencies (``data``, ``training``) are not imported here.
"""

from __future__ import annotations

from taas.gnn.checkpoint import Checkpoint, load_checkpoint, load_shipped, save_checkpoint
from taas.gnn.features import (
    EDGE_FEATURE_NAMES,
    FEATURE_VERSION,
    NODE_FEATURE_NAMES,
    edge_features,
    node_features,
)
from taas.gnn.models import (
    EdgeFilter,
    EmbeddingConfig,
    EmbeddingMLP,
    FilterConfig,
    GNNConfig,
    InteractionGNN,
)

__all__ = [
    "EDGE_FEATURE_NAMES", "FEATURE_VERSION", "NODE_FEATURE_NAMES", "Checkpoint", "EdgeFilter",
    "EmbeddingConfig", "EmbeddingMLP", "FilterConfig", "GNNConfig", "InteractionGNN",
    "edge_features", "load_checkpoint", "load_shipped", "node_features", "save_checkpoint",
]
