"""How the GNN models run at inference, per device: one place for the whole-graph vs chunked
choice that the reconstruction stages (``taas.gnn.stages``) and the validation of training
(``taas.gnn.training``) share, so that a model is scored the same way in both.

On CUDA every model runs on the whole event at once (the GPU wants large batches). On a CPU the
embedding and the interaction GNN run their ``forward_chunked`` twins and the edge filter runs
in chunks of edges, so the activations stay in cache; the answers agree with ``forward`` to
float rounding (see the models' docstrings).
"""

from __future__ import annotations

import torch
from torch import nn

from taas.gnn.models import EmbeddingMLP, InteractionGNN

#: Edges scored per forward pass of the edge filter, on the CPU device and on CUDA (bounds
#: activation memory on large events). On a CPU 8k chunks keep the activations in cache:
#: interleaved against 64k on one thread, small / medium / large events' raw graphs (49k /
#: 1.3M / 5.3M edges) took 0.023 / 0.62 / 2.5 s instead of 0.044 / 0.73 / 3.0 s. On an H100 a
#: ``large`` event's 5.3M edges took 115 ms in 64k chunks, 42 ms in 1M chunks or in one pass.
FILTER_CHUNK = 1 << 13
FILTER_CHUNK_CUDA = 1 << 20

#: Space points per chunk of the embedding on the CPU device (``EmbeddingMLP.forward_chunked``;
#: CUDA embeds every point at once).
EMBED_CHUNK = 1 << 13

#: Edges (and nodes) per chunk of the interaction GNN on the CPU device
#: (``InteractionGNN.forward_chunked``: time linear in the graph size there).
GNN_CHUNK = 1 << 14


def embed_nodes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The embedding of node features ``x``: in one pass on CUDA, in chunks elsewhere.

    ``model`` comes from a checkpoint file: one of another kind stops here, by name."""
    if not isinstance(model, EmbeddingMLP):
        raise TypeError(f"the embedding needs an EmbeddingMLP, got {type(model).__name__}")
    return model(x) if x.device.type == "cuda" else model.forward_chunked(x, EMBED_CHUNK)


def filter_chunk(device: torch.device, configured: int | None = None) -> int:
    """Edges per forward pass of the edge filter on ``device`` (``configured`` overrides)."""
    default = FILTER_CHUNK_CUDA if device.type == "cuda" else FILTER_CHUNK
    return max(int(configured or default), 1)


def gnn_logits(model: nn.Module, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
               edge_attr: torch.Tensor, chunk: int = GNN_CHUNK, *,
               strip: torch.Tensor | None = None) -> torch.Tensor:
    """Interaction-GNN logits: ``forward`` on CUDA (or with ``chunk`` <= 0), else
    ``forward_chunked`` in ``chunk``-sized pieces (``model`` checked as in ``embed_nodes``).
    ``strip``: the per-node strip mask a heterogeneous GNN needs (a homogeneous one ignores
    it; ``InteractionGNN.encode_nodes``)."""
    if not isinstance(model, InteractionGNN):
        raise TypeError(f"edge classification needs an InteractionGNN, got "
                        f"{type(model).__name__}")
    if x.device.type == "cuda" or chunk <= 0:
        return model(x, src, dst, edge_attr, strip)
    return model.forward_chunked(x, src, dst, edge_attr, chunk, strip)
