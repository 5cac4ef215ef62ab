"""Pipelines: ordered (stage, backend) steps, the EF-tracking options (``docs/architecture.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from taas.errors import TaasError
from taas.stages.configs import merge_configs


@dataclass(frozen=True)
class PipelineSpec:
    """A named, ordered list of (stage, backend) steps.

    ``accel_stages``: the stages that belong on the accelerator (the workflow's ``accel``
    setting moves them to its backend); () for a pipeline with none. ``stage_configs``: this
    pipeline's settings of its stages, ``{stage: {field: value}}`` (JSON values, so they travel
    into model repositories unchanged); fields not named keep the stage's own defaults.
    """

    name: str
    steps: tuple[tuple[str, str], ...]
    description: str = ""
    accel_stages: tuple[str, ...] = ()
    stage_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        unknown = set(self.stage_configs) - {stage for stage, _ in self.steps}
        if unknown:
            raise TaasError(f"pipeline {self.name!r}: stage configs for stage(s) "
                            f"{sorted(unknown)} it does not run")

    def with_routing(self, routing: dict[str, str]) -> PipelineSpec:
        """The same pipeline with single stages moved to other backends."""
        unknown = set(routing) - {stage for stage, _ in self.steps}
        if unknown:
            raise TaasError(f"pipeline {self.name!r} has no stage(s) {sorted(unknown)}; "
                            f"stages: {[s for s, _ in self.steps]}")
        steps = tuple((stage, routing.get(stage, backend)) for stage, backend in self.steps)
        return replace(self, steps=steps)

    def with_accel(self, backend: str) -> PipelineSpec:
        """The same pipeline with its accelerator stages on ``backend`` (the CLI's --accel)."""
        return self.with_routing(dict.fromkeys(self.accel_stages, backend))

    def with_configs(self, overrides: Mapping[str, Mapping[str, Any]] | None) -> PipelineSpec:
        """The same pipeline with stage config fields overridden (merged field by field);
        overrides for stages this pipeline does not run are ignored, so one file can serve
        several pipelines."""
        steps = {stage for stage, _ in self.steps}
        mine = {stage: values for stage, values in (overrides or {}).items() if stage in steps}
        return replace(self, stage_configs=merge_configs(self.stage_configs, mine))


#: The CPU-only classical chain: the yardstick every accelerated pipeline is compared with.
CPU = PipelineSpec(
    "cpu",
    (("clustering", "cpu"), ("spacepoints", "cpu"), ("seeding", "cpu"), ("ckf", "cpu"),
     ("ambiguity", "cpu"), ("track_fit", "cpu")),
    "classical: clustering, space points, triplet seeding, CKF, ambiguity resolution, KF fit",
)

#: Track 1 (ACORN / Exa.TrkX): GNN track finding on the accelerator, CPU front end and fit.
ACORN = PipelineSpec(
    "acorn",
    (("clustering", "cpu"), ("spacepoints", "cpu"), ("graph_construction", "gpu"),
     ("edge_classification", "gpu"), ("track_building", "gpu"), ("track_fit", "cpu")),
    "GNN: metric-learning graph + edge filter, interaction GNN, connected components, KF fit",
    accel_stages=("graph_construction", "edge_classification", "track_building"),
    # ACORN's "CC and walk": walking branched components along the best edges beats plain CC
    # (medium, seed 21: efficiency 0.983 vs 0.955 at min_hits 5); min_hits 8 trades a point
    # of efficiency for the fake rate (min_hits 5 / 7 / 8: 0.983 / 0.978 / 0.969 efficiency,
    # 3.9% / 1.1% / 0.6% fakes). Edges above 0.3, the cut the shipped GNN is validated at
    # (taas.gnn.training.shipped_config): a point of efficiency over 0.5 at +0.1% fakes.
    # Results: benchmarks/results/gnn_scaling.json
    stage_configs={"track_building": {"method": "walkthrough", "min_hits": 8,
                                      "score_cut": 0.3, "walk_min": 0.3}},
)

#: Track 2 (EF tracking): the GNN's proto-tracks seed a traccc-style CKF (``traccc_bridge``),
#: which adds the hits the GNN missed and drops the ones it wrongly merged; then ambiguity
#: resolution and the KF fit of the classical chain.
ACORN_TRACCC = PipelineSpec(
    "acorn_traccc",
    (("clustering", "cpu"), ("spacepoints", "cpu"), ("graph_construction", "gpu"),
     ("edge_classification", "gpu"), ("track_building", "gpu"), ("prototrack_seeding", "cpu"),
     ("prototrack_ckf", "cpu"), ("ambiguity", "cpu"), ("track_fit", "cpu")),
    "GNN proto-tracks seed a traccc-style CKF: ambiguity resolution, KF fit",
    # the whole chain on the accelerator (docs DESIGN: "full chain on the accelerator"): the
    # front end too (clustering/gpu, spacepoints/gpu: OpenCL kernels, whose space points reach
    # the torch stages through the host: benchmarks/results/opencl_torch_handover.json), and
    # the bridge, the CKF, the ambiguity solver and the fit
    # (prototrack_seeding/gpu: torch surface sort, triplets and estimates, host
    # supplementary seeding, its starts left on the device; prototrack_ckf/gpu: the CKF in
    # torch, reading those starts there, seed batches chosen on the host;
    # ambiguity/gpu: the greedy solver in torch; track_fit/gpu: filter and smoother in torch)
    accel_stages=("clustering", "spacepoints", "graph_construction", "edge_classification",
                  "track_building", "prototrack_seeding", "prototrack_ckf", "ambiguity",
                  "track_fit"),
    # Track building as acorn's, so that one model repository serves both pipelines with the
    # same track_building models (a stage model has one configuration). Keeping the short
    # proto-tracks ACORN drops (min_hits 3) for the CKF to complete gained little: two medium
    # events, efficiency 0.9993 at min_hits 3 against 0.9989 at 8, no fakes either way
    # (benchmarks/results/acorn_traccc.json was measured at min_hits 3). The bridge's defaults
    # (traccc_bridge.config: triplet seeds, free CKF, supplementary seeding of the whole event)
    # were chosen on medium and large events; ambiguity resolution as the cpu chain's.
    stage_configs={"track_building": dict(ACORN.stage_configs["track_building"])},
)

#: Track 3 (EF tracking): the front end and the GNN's networks on an FPGA, emulated bit for bit
#: in C simulation (HLS C++ kernels, hls4ml blocks); the radius search, track building and the
#: fit stay on the CPU. Its times are emulation times, not hardware times (the hardware model
#: is benchmarks/fpga_hardware_model.py).
FPGA = PipelineSpec(
    "fpga",
    (("clustering", "fpga"), ("spacepoints", "fpga"), ("graph_construction", "fpga"),
     ("edge_classification", "fpga"), ("track_building", "cpu"), ("track_fit", "cpu")),
    "FPGA (hls4ml C simulation): HLS front end, fixed-point embedding, filter and GNN; CPU "
    "track building and KF fit",
    stage_configs={"track_building": dict(ACORN.stage_configs["track_building"])},
)

PIPELINES: dict[str, PipelineSpec] = {p.name: p for p in (CPU, ACORN, ACORN_TRACCC, FPGA)}


def get_pipeline(name: str) -> PipelineSpec:
    """The pipeline called ``name``; the error lists the valid choices."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise TaasError(f"unknown pipeline {name!r}; choose from {sorted(PIPELINES)}") from None
