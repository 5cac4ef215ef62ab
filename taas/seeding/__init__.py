"""Triplet seeding (stage 3 of the CPU chain): space point triplets that start track finding."""

from taas.seeding.config import SeedingConfig
from taas.seeding.triplets import find_seeds, warmup

__all__ = ["SeedingConfig", "find_seeds", "warmup"]
