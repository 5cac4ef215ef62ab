"""Matching style and fiducial cuts: recorded beside every figure they produce.

An efficiency means nothing without its definition: the same tracks give rates that differ by
several percent between matching styles and particle selections. ``MatchingConfig`` holds every
such choice, is validated once, and is written into ``metrics.json`` next to the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

from taas.errors import InputError

#: Matching styles (definitions in ``taas.metrics.matching``).
STYLES = ("ATLAS", "one_way", "two_way")


@dataclass(frozen=True)
class MatchingConfig:
    """How tracks are matched to particles and which particles and tracks count.

    style:                 "ATLAS", "one_way" or "two_way" (see ``taas.metrics.matching``).
    matching_fraction:     a fraction must be strictly above this to match (>= 0.5, so that at
                           most one particle can own a track).
    pt_min, eta_max:       fiducial particle cuts: pT >= pt_min (GeV), |eta| <= eta_max.
    min_particle_measurements: fiducial particles leave at least this many measurements.
    primary_only:          fiducial particles come from a primary vertex.
    min_track_measurements: tracks shorter than this are dropped before any rate is computed.
    pixel_weight:          weight of a pixel measurement in the ATLAS matching probability
                           (ATLAS uses 2, strips 1); 1 when pixel and strip are not told apart.
    """

    style: str = "two_way"
    matching_fraction: float = 0.5
    pt_min: float = 1.0
    eta_max: float = 2.5
    min_particle_measurements: int = 3
    primary_only: bool = True
    min_track_measurements: int = 3
    pixel_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise InputError(f"matching style {self.style!r} is not one of {list(STYLES)}")
        checks = {
            "matching_fraction": (0.5 <= self.matching_fraction < 1.0, "in [0.5, 1)"),
            "pt_min": (self.pt_min >= 0.0 and math.isfinite(self.pt_min), ">= 0 and finite"),
            "eta_max": (self.eta_max > 0.0, "> 0"),
            "min_particle_measurements": (self.min_particle_measurements >= 1, ">= 1"),
            "min_track_measurements": (self.min_track_measurements >= 1, ">= 1"),
            "pixel_weight": (self.pixel_weight > 0.0 and math.isfinite(self.pixel_weight),
                             "> 0 and finite"),
        }
        for name, (ok, want) in checks.items():
            if not ok:
                raise InputError(f"matching config: {name}={getattr(self, name)!r}, "
                                 f"expected {want}")
        for name in ("min_particle_measurements", "min_track_measurements"):
            if int(getattr(self, name)) != getattr(self, name) or isinstance(
                    getattr(self, name), bool):
                raise InputError(f"matching config: {name}={getattr(self, name)!r} "
                                 "must be an integer")
        if not isinstance(self.primary_only, bool):
            raise InputError(f"matching config: primary_only={self.primary_only!r} "
                             "must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Inverse of ``to_dict``; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"matching config: unknown keys {unknown}; valid keys are "
                             f"{sorted(known)}")
        return cls(**values)
