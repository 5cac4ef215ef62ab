"""Run a pipeline's stages in-process on one event's tensors, timing every stage."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from taas.detector.detector import Detector
from taas.pipeline.spec import PipelineSpec
from taas.stages import registry
from taas.stages.base import Stage
from taas.stages.configs import build_config, merge_configs


@dataclass
class StageTiming:
    """Wall time of one stage on one event, and the device it actually ran on."""

    stage: str
    backend: str
    device: str
    seconds: float


@dataclass
class PipelineResult:
    """The tensor pool after the run, the timing of each stage that ran, and the stages
    skipped because the input already carried their outputs (``Pipeline.run``)."""

    tensors: dict[str, np.ndarray]
    timings: list[StageTiming] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(t.seconds for t in self.timings)


class Pipeline:
    """Stages instantiated once (weights, geometry loaded once), then run per event.

    Tensors flow through one pool: each stage takes the inputs it declares from the pool and adds
    its outputs, so a later stage can use any earlier output (the fit uses measurements from
    clustering and tracks from the CKF). A stage whose outputs are all in the *input* is
    skipped: an event given as space points (``taas.reco.hit_spacepoints``) brings the
    front end's outputs, so clustering and space-point formation do not run.

    Stage configs: the spec's ``stage_configs``, then ``configs`` (per stage either a mapping
    of fields, merged over the spec's, or a ready config object, used as it is).
    """

    def __init__(self, spec: PipelineSpec, detector: Detector,
                 configs: Mapping[str, object] | None = None) -> None:
        objects = {k: v for k, v in (configs or {}).items() if not isinstance(v, Mapping)}
        fields = merge_configs(spec.stage_configs,
                               {k: v for k, v in (configs or {}).items() if isinstance(v, Mapping)})
        self.spec = spec
        self.stages: list[Stage] = []
        for stage_name, backend in spec.steps:
            cls = registry.resolve(stage_name, backend)
            if stage_name in objects:
                kwargs = {"config": objects[stage_name]}
            elif stage_name in fields:
                kwargs = {"config": build_config(cls, fields[stage_name])}
            else:
                kwargs = {}
            self.stages.append(cls(detector, **kwargs))

    def run(self, inputs: Mapping[str, np.ndarray]) -> PipelineResult:
        pool = dict(inputs)
        result = PipelineResult(pool)
        given = set(inputs)
        for stage in self.stages:
            if all(s.name in given for s in stage.OUTPUTS):
                result.skipped.append(stage.NAME)
                continue
            t0 = time.perf_counter()
            out = stage.run({s.name: pool[s.name] for s in stage.INPUTS if s.name in pool})
            seconds = time.perf_counter() - t0
            pool.update(out)
            result.timings.append(StageTiming(stage.NAME, stage.BACKEND, stage.device, seconds))
        return result
