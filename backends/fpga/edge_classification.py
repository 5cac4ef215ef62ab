"""FPGA edge classification: the interaction GNN in hls4ml C simulation, on graph sections.

The stage is ``taas.gnn.stages.EdgeClassificationStage``; this backend overrides its
``edge_scores`` hook with ``backends.fpga.gnn_emulation``: the event's graph is split into
overlapping (eta, phi) sections of the kernels' fixed size, each section runs the encoders,
message passing and classifier in fixed point (threads over sections), and every edge takes
its score from exactly one section. The sigmoid is applied on the host.

Configuration as ``backends.fpga.graph_construction``: an ``FpgaGnnStageConfig`` or a mapping of
its fields.
"""

from __future__ import annotations

import numpy as np
import torch

from backends.fpga.config import FpgaConfig, FpgaGnnStageConfig
from backends.fpga.gnn_emulation import FixedPointGnnStage
from taas.gnn.stages import EdgeClassificationStage
from taas.stages.base import Tolerance

__all__ = ["FpgaConfig", "FpgaEdgeClassification", "FpgaGnnStageConfig"]


class FpgaEdgeClassification(FixedPointGnnStage, EdgeClassificationStage):
    """Filtered graph -> the same edges with interaction-GNN scores emulated in fixed point."""

    BACKEND = "fpga"
    #: The same edges; scores within 0.02 of the float GNN's (measured on a tiny event: 0.012
    #: at ap_fixed<18,8>, every decision at the 0.5 cut the same; ap_fixed<16,6> has the same LSB).
    CONFORMANCE_TOLERANCE = Tolerance(rtol=0.0, atol=0.02)

    @property
    def device(self) -> str:
        f = self.fpga
        return (f"fpga (hls4ml C simulation: interaction GNN on sections of {f.section_nodes} "
                f"nodes / {f.section_edges} edges, {f.data}, {f.threads} threads)")

    def edge_scores(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
                    ) -> torch.Tensor:
        logits = self.chain.gnn_logits(x.cpu().numpy(), src.cpu().numpy(), dst.cpu().numpy())
        return torch.sigmoid(torch.from_numpy(np.asarray(logits, np.float32)))
