"""CPU ambiguity: the reference hook of ``taas.tracking.stages.AmbiguityResolutionStage``,
greedy ambiguity resolution (taas.tracking.ambiguity).
"""

from __future__ import annotations

from taas.tracking.stages import AmbiguityResolutionStage


class CpuAmbiguityResolution(AmbiguityResolutionStage):
    """The ambiguity stage on the CPU."""

    BACKEND = "cpu"
