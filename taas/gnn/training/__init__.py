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

The steps run in PyTorch Lightning (``taas.gnn.training.lightning``: one ``StageModule`` base,
``EmbeddingModule`` and ``EdgeClassifierModule`` for filter and GNN, ``StageData`` for their
steps): ``TrainingConfig.devices`` > 1 trains data-parallel (DDP: gloo on CPUs, NCCL on GPUs),
``amp`` trains in bf16 on CUDA, and Lightning draws the progress bars. The checkpoints are taas'
own (``taas.gnn.checkpoint``: config, working points, validation metrics), so inference never
imports Lightning; their metrics add ``val_loss_history`` and ``data_parallel`` (the process
count and a digest of every process's final weights, which DDP keeps identical).

Everything is seeded (torch, numpy, the samplers; per-step draws from ``(seed, rank, step)``)
and runs with deterministic algorithms, so the same data, config and process count give the same
weights on the same device. Defaults train on two CPU cores in minutes from
a few dozen ``small`` events; ``TrainingConfig.gpu_size()`` gives ACORN-size models and longer
schedules for a GPU (there, with a few hundred ``medium`` events, ``sectors`` and ``max_edges``
can stay at whole events).

Metrics are counted over all validation events together: *efficiency* = truth edges present in
the graph / truth edges (``taas.metrics.graph``), *purity* = true graph edges / graph edges,
*target efficiency* the same over truth edges of particles above ``target_pt``.
"""

from __future__ import annotations

from taas.gnn.training.config import (
    SHIPPED_DATA,
    EmbeddingTraining,
    FilterTraining,
    GNNTraining,
    TrainingConfig,
    shipped_config,
)
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
    StageModule,
    StepDataset,
    parameter_digest,
)
from taas.gnn.training.loops import (
    choose_working_point,
    train_embedding,
    train_filter,
    train_gnn,
    working_point,
)
from taas.gnn.training.recipes import reproduce_shipped, simulate_once, train_all, train_edge_models
from taas.gnn.training.runtime import autocast, resolve_device
from taas.gnn.training.scoring import edge_scores, embed, evaluate, score_event

__all__ = [
    "SHIPPED_DATA",
    "EdgeChunks",
    "EdgeClassifierModule",
    "EmbeddingModule",
    "EmbeddingTraining",
    "FilterTraining",
    "GNNTraining",
    "GraphCounts",
    "StageData",
    "StageModule",
    "StepDataset",
    "TrainingConfig",
    "TrainingGraph",
    "autocast",
    "choose_working_point",
    "edge_scores",
    "embed",
    "evaluate",
    "pair_keys",
    "parameter_digest",
    "phi_sectors",
    "reproduce_shipped",
    "resolve_device",
    "score_event",
    "shipped_config",
    "simulate_once",
    "to_graph",
    "train_all",
    "train_edge_models",
    "train_embedding",
    "train_filter",
    "train_gnn",
    "working_point",
]
