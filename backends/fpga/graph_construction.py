"""FPGA graph construction: the embedding and the edge filter in hls4ml C simulation.

The stage is ``taas.gnn.stages.GraphConstructionStage``; this backend overrides its two model
hooks, ``embed`` and ``filter_scores``, with the bit-accurate emulation of
``backends.fpga.gnn_emulation``. The radius search (FRNN, scipy's k-d tree), the graph's
orientation and the filter cut stay on the CPU, and ``device`` says so.

Configuration: ``FpgaGraphConstruction(detector, config)`` with ``config`` an
``FpgaGnnStageConfig`` (the GNN stages' fields plus ``fpga``, the blocks' ``FpgaConfig``) or a
mapping of its fields.
"""

from __future__ import annotations

import numpy as np
import torch

from backends.fpga.config import FpgaConfig, FpgaGnnStageConfig
from backends.fpga.gnn_emulation import FixedPointGnnStage
from taas.gnn.stages import GraphConstructionStage
from taas.stages.base import Tolerance

__all__ = ["FpgaConfig", "FpgaGnnStageConfig", "FpgaGraphConstruction"]


class FpgaGraphConstruction(FixedPointGnnStage, GraphConstructionStage):
    """Space points -> filtered graph, embedding and filter emulated in fixed point."""

    BACKEND = "fpga"
    #: The fixed-point embedding moves a few pairs across the radius and the filter's scores a
    #: few edges across its cut: on a tiny event 899 edges against the float stage's 898, 898
    #: shared (0.1%); up to 1% of the edges may differ.
    CONFORMANCE_TOLERANCE = Tolerance(row_fraction=0.01)

    @property
    def device(self) -> str:
        return (f"fpga (hls4ml C simulation: embedding, filter; {self.fpga.data}); "
                f"FRNN {self.frnn_name} on cpu")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.chain.embed(x.cpu().numpy())).float()

    def filter_scores(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
                      ) -> torch.Tensor:
        logits = self.chain.filter_logits(x.cpu().numpy(), src.cpu().numpy(),
                                          dst.cpu().numpy())
        return torch.sigmoid(torch.from_numpy(np.asarray(logits, np.float32)))
