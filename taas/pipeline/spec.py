"""Pipelines: ordered (stage, backend) steps, the EF-tracking options of DESIGN.md."""

from __future__ import annotations

from dataclasses import dataclass

from taas.errors import TaasError


@dataclass(frozen=True)
class PipelineSpec:
    """A named, ordered list of (stage, backend) steps."""

    name: str
    steps: tuple[tuple[str, str], ...]
    description: str = ""

    def with_routing(self, routing: dict[str, str]) -> PipelineSpec:
        """The same pipeline with single stages moved to other backends."""
        unknown = set(routing) - {stage for stage, _ in self.steps}
        if unknown:
            raise TaasError(f"pipeline {self.name!r} has no stage(s) {sorted(unknown)}; "
                            f"stages: {[s for s, _ in self.steps]}")
        steps = tuple((stage, routing.get(stage, backend)) for stage, backend in self.steps)
        return PipelineSpec(self.name, steps, self.description)


#: The CPU-only classical chain: the yardstick every accelerated pipeline is compared with.
CPU = PipelineSpec(
    "cpu",
    (("clustering", "cpu"), ("spacepoints", "cpu"), ("seeding", "cpu"), ("ckf", "cpu"),
     ("ambiguity", "cpu"), ("track_fit", "cpu")),
    "classical: clustering, space points, triplet seeding, CKF, ambiguity resolution, KF fit",
)

PIPELINES: dict[str, PipelineSpec] = {p.name: p for p in (CPU,)}


def get_pipeline(name: str) -> PipelineSpec:
    """The pipeline called ``name``; the error lists the valid choices."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise TaasError(f"unknown pipeline {name!r}; choose from {sorted(PIPELINES)}") from None
