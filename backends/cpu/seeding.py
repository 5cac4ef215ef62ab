"""CPU seeding: the reference hook of ``taas.seeding.stages.SeedingStage``,
triplet seeding, numba (taas.seeding).
"""

from __future__ import annotations

from taas.seeding.stages import SeedingStage


class CpuSeeding(SeedingStage):
    """The seeding stage on the CPU."""

    BACKEND = "cpu"
