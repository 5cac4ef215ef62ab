"""The GNN chain in bit-accurate C simulation: embedding, edge filter, sectioned interaction GNN.

Per block the arithmetic is the FPGA's (hls4ml models and our HLS kernels, types from one
``FpgaConfig``); what stays on the host, in float, is said where it happens:

* node features (``taas.gnn.features``) and edge features (differences, a wrap, two clipped
  slopes of node features) are computed in float on the host and quantized at the block input;
* the embedding's L2 normalisation runs on the host with the radius search (FRNN on the CPU);
* the interaction GNN runs per graph section (``backends.fpga.sections``), sections in
  parallel threads (ctypes releases the GIL), and its logits are merged back per edge.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import torch

from backends.fpga.config import FpgaConfig, FpgaGnnStageConfig
from backends.fpga.graph_kernels import GraphKernels, graph_kernels, require_finite
from backends.fpga.hls4ml_models import FixedPointBlock, block_nets
from backends.fpga.sections import Section, merge_scores, split_sections
from taas.detector.detector import Detector
from taas.gnn.checkpoint import Checkpoint
from taas.gnn.features import edge_features
from taas.gnn.models import EdgeFilter, EmbeddingMLP, InteractionGNN

log = logging.getLogger(__name__)


def load_blocks(models: list[tuple[str, torch.nn.Module]], config: FpgaConfig,
                kernels: GraphKernels) -> dict[str, FixedPointBlock]:
    """Every MLP block of ``models`` in C simulation (compiled in parallel where needed)."""
    nets = block_nets(models)
    with ThreadPoolExecutor(max_workers=config.threads) as pool:
        blocks = pool.map(lambda item: FixedPointBlock(item[0], item[1], config, kernels),
                          nets.items())
        return {block.block: block for block in blocks}


def event_edge_features(x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The float edge features of ``taas.gnn.features`` (host side), as float64."""
    xt = torch.as_tensor(np.asarray(x, np.float32))
    return edge_features(xt, torch.as_tensor(src), torch.as_tensor(dst)).double().numpy()


class FixedPointGnnChain:
    """Embedding, filter and interaction GNN of loaded checkpoints in C simulation.

    ``models`` holds any of ``("embedding", EmbeddingMLP)``, ``("filter", EdgeFilter)``,
    ``("gnn", InteractionGNN)``; ``compiled`` counts the hls4ml libraries compiled while
    loading (0 when every block came from the cache).
    """

    def __init__(self, models: list[tuple[str, torch.nn.Module]], config: FpgaConfig) -> None:
        self.config = config
        self.kernels = graph_kernels(config)
        self.models = dict(models)
        self.blocks = load_blocks(models, config, self.kernels)
        self.compiled = sum(block.compiled for block in self.blocks.values())

    # -- graph construction -------------------------------------------------------------------

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Unit-vector embedding: the MLP emulated (node chunks in parallel threads), the
        normalisation on the host."""
        assert isinstance(self.models["embedding"], EmbeddingMLP)
        chunks = np.array_split(np.asarray(x, np.float64), max(1, min(self.config.threads,
                                                                      len(x))))
        with ThreadPoolExecutor(max_workers=self.config.threads) as pool:
            raw = np.concatenate(list(pool.map(self.blocks["embedding"], chunks)))
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norm, 1e-12)

    def filter_logits(self, x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Edge-filter logits: the event's edges stream past the node table in section-sized
        chunks (gather kernel + hls4ml block), chunks in parallel threads."""
        assert isinstance(self.models["filter"], EdgeFilter)
        require_finite("node features", x)
        attr = event_edge_features(x, src, dst)
        step = self.kernels.section_edges
        chunks = [slice(i, i + step) for i in range(0, len(src), step)]

        def run(s: slice) -> np.ndarray:
            rows = self.kernels.gather_edge_inputs(x, attr[s], src[s], dst[s])
            return self.blocks["filter"](rows)[:, 0]

        with ThreadPoolExecutor(max_workers=self.config.threads) as pool:
            parts = list(pool.map(run, chunks))
        return np.concatenate(parts) if parts else np.zeros(0)

    # -- edge classification ------------------------------------------------------------------

    def _block(self, name: str, iteration: int) -> FixedPointBlock:
        gnn = self.models["gnn"]
        assert isinstance(gnn, InteractionGNN)
        return self.blocks[name if gnn.config.recurrent else f"{name}.{iteration}"]

    def section_logits(self, x: np.ndarray, attr: np.ndarray, src: np.ndarray,
                       dst: np.ndarray) -> np.ndarray:
        """Interaction-GNN logits of one section (local node indices), as the FPGA runs it."""
        gnn = self.models["gnn"]
        assert isinstance(gnn, InteractionGNN)
        k = self.kernels
        h = self.blocks["gnn.node_encoder"](x)
        e = self.blocks["gnn.edge_encoder"](k.gather_edge_inputs(h, attr, src, dst))
        for i in range(gnn.config.n_iterations):
            e = k.residual_add(e, self._block("gnn.edge_net", i)(
                k.gather_edge_inputs(h, e, src, dst)))
            h = k.residual_add(h, self._block("gnn.node_net", i)(
                k.node_inputs(h, e, src, dst)))
        return self.blocks["gnn.classifier"](k.gather_edge_inputs(h, e, src, dst))[:, 0]

    def sections(self, x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> list[Section]:
        """The event's graph sections, sectors in (eta, phi) read from the node features
        (``phi / pi`` and ``eta / 3`` columns of ``taas.gnn.features``)."""
        return split_sections(x[:, 3] * 3.0, x[:, 1] * math.pi, src, dst, self.config)

    def gnn_logits(self, x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Interaction-GNN logits of an event: sections in parallel threads, merged so that
        every edge is scored exactly once."""
        require_finite("node features", x)
        src = np.asarray(src, np.int64)
        dst = np.asarray(dst, np.int64)
        attr = event_edge_features(x, src, dst)
        sections = self.sections(x, src, dst)
        log.debug("GNN: %d nodes, %d edges -> %d sections", len(x), len(src), len(sections))

        def run(section: Section) -> np.ndarray:
            return self.section_logits(x[section.nodes], attr[section.edge_ids],
                                       section.src, section.dst)

        with ThreadPoolExecutor(max_workers=self.config.threads) as pool:
            scores = list(pool.map(run, sections))
        return merge_scores(len(src), sections, scores)


class FixedPointGnnStage:
    """What both FPGA GNN stages add to their GNN stage base (a mixin before it): the FPGA
    configuration beside the GNN one (``FpgaGnnStageConfig``), and the stage's checkpoints as
    one fixed-point chain, compiled or loaded from the cache once, in the constructor."""

    MODELS: ClassVar[tuple[str, ...]]
    models: dict[str, Checkpoint]

    def __init__(self, detector: Detector | None,
                 config: FpgaGnnStageConfig | Mapping[str, Any] | None = None) -> None:
        stage_config = FpgaGnnStageConfig.coerce(config)
        super().__init__(detector, stage_config)  # type: ignore[call-arg]
        self.fpga: FpgaConfig = FpgaConfig.coerce(stage_config.fpga)
        self.chain = FixedPointGnnChain([(name, self.models[name].model)
                                         for name in self.MODELS], self.fpga)
