"""Run a pipeline's stages in-process on one event's tensors, timing every stage and counting
its host <-> device copies (``taas.stages.transfers``)."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from taas.detector.detector import Detector
from taas.errors import InputError
from taas.pipeline.spec import PipelineSpec
from taas.stages import registry
from taas.stages.base import EarlyWork, Stage, validate_event
from taas.stages.configs import build_config, merge_configs
from taas.stages.transfers import ResidentStage, StageTraffic, collecting

if TYPE_CHECKING:
    import torch

    from taas.stages.device_tensors import DeviceTensors


@dataclass
class StageTiming:
    """Wall time of one stage on one event, the device it actually ran on, and its host <->
    device traffic (``transfers``; ``counted`` False where nobody counted it: a stage off the
    host backend that does not count, or a served model timed from outside). Copies deferred
    by residency (a device tensor downloaded when a later host stage or the caller needs it)
    are added to the stage that produced the tensor."""

    stage: str
    backend: str
    device: str
    seconds: float
    transfers: StageTraffic = field(default_factory=StageTraffic)
    counted: bool = False


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

    ``resident`` (device residency): the pool keeps a ``DeviceTensors`` per torch device, and
    stages that can (``ResidentStage``: the GNN stages, track building, the bridge and its
    CKF) read their inputs
    from it and leave their tensor outputs there, so consecutive stages on one device hand
    tensors over without copies; a device tensor comes to the host only when a host stage or
    the caller (``run``'s ``outputs``) needs it. Outputs are identical either way (the stages
    run the same ``compute_on_device``; only where the copies happen differs). Other stages,
    and every caller of ``Stage.run`` (Triton per-stage models, tests), keep the numpy API.

    Early work: a stage that is an ``EarlyWork`` (the gpu bridge's supplementary seeding) is
    offered its early inputs as soon as they are in the host pool, if it runs later than the
    next stage, so its host work overlaps the stages in between; unused work is dropped at
    the end of every run.
    """

    #: Device residency (see the class docstring); an instance setting, on by default.
    resident: bool = True

    def __init__(self, spec: PipelineSpec, detector: Detector,
                 configs: Mapping[str, object] | None = None, *,
                 resident: bool = True) -> None:
        self.resident = resident
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

    def run(self, inputs: Mapping[str, np.ndarray],
            outputs: Collection[str] | None = None) -> PipelineResult:
        """Run every stage on one event. ``outputs``: the tensors the caller needs on the host
        (None: all); with residency, device tensors not among them are never copied back and
        are absent from the result."""
        pool = dict(inputs)
        result = PipelineResult(pool)
        given = set(inputs)
        devices: dict[torch.device, DeviceTensors] = {}
        producers: dict[str, StageTraffic] = {}  # device-resident tensor -> its stage's traffic
        early: list[EarlyWork] = [s for s in self.stages if isinstance(s, EarlyWork)]
        try:
            for i, stage in enumerate(self.stages):
                early = _offer_early_work(early, self.stages[i + 1:], pool)
                self._run_stage(stage, pool, given, result, devices, producers)
        finally:
            for stage in self.stages:
                if isinstance(stage, EarlyWork):
                    stage.drop_early()
        for name in list(producers):
            if outputs is None or name in outputs:
                _to_host(name, devices, producers)
        return result

    def _run_stage(self, stage: Stage, pool: dict[str, np.ndarray], given: set[str],
                   result: PipelineResult, devices: dict[torch.device, DeviceTensors],
                   producers: dict[str, StageTraffic]) -> None:
        """One stage of ``run``: its inputs to where it works, its run, its timing."""
        if all(s.name in given for s in stage.OUTPUTS):
            result.skipped.append(stage.NAME)
            return
        timing = StageTiming(stage.NAME, stage.BACKEND, "", 0.0)
        home: DeviceTensors | None = None
        if self.resident and isinstance(stage, ResidentStage):
            # torch's side of the ledger, loaded only for a chain with torch stages
            from taas.stages.device_tensors import DeviceTensors

            home = devices.setdefault(stage.torch_device,
                                      DeviceTensors(pool, stage.torch_device))
        for spec in stage.INPUTS:  # inputs resident elsewhere come back to the host first
            _to_host(spec.name, devices, producers, unless_on=home)
        t0 = time.perf_counter()
        with collecting(timing.transfers):
            if home is not None:
                left = _run_resident(stage, home)
            else:
                left = []
                pool.update(stage.run({s.name: pool[s.name] for s in stage.INPUTS
                                       if s.name in pool}))
        timing.seconds = time.perf_counter() - t0
        timing.device = stage.device  # as the stage reports it after running
        for name in (s.name for s in stage.OUTPUTS):  # older values elsewhere are stale
            producers.pop(name, None)
            for tensors in devices.values():
                if not (name in left and tensors is home):
                    tensors.on_device.pop(name, None)
        producers.update(dict.fromkeys(left, timing.transfers))
        timing.counted = bool(timing.transfers.by_kind) or stage.BACKEND == "cpu" or (
            isinstance(stage, ResidentStage) or getattr(stage, "COUNTS_TRANSFERS", False))
        result.timings.append(timing)


def _offer_early_work(waiting: list[EarlyWork], later: list[Stage],
                      pool: Mapping[str, np.ndarray]) -> list[EarlyWork]:
    """Start the early work of the stages that run ``later`` than the next one and whose
    early inputs are all on the host in ``pool`` now; returns the stages still waiting."""
    still = []
    later_ids = {id(stage) for stage in later}
    for stage in waiting:
        if id(stage) not in later_ids:
            continue
        if all(name in pool for name in stage.EARLY_INPUTS):
            stage.start_early({name: pool[name] for name in stage.EARLY_INPUTS})
        else:
            still.append(stage)
    return still


def _to_host(name: str, devices: Mapping[torch.device, DeviceTensors],
             producers: dict[str, StageTraffic], unless_on: DeviceTensors | None = None
             ) -> None:
    """Bring device-resident ``name`` to the host pool (counted with its producer's copies),
    unless it lives on ``unless_on``, the device of the stage about to read it."""
    tensors = next((t for t in devices.values() if name in t.device_only()), None)
    if tensors is None or tensors is unless_on:
        return
    with collecting(producers.pop(name)):
        tensors.host(name)


def _run_resident(stage: Stage, tensors: DeviceTensors) -> list[str]:
    """``Stage.run`` of a ``ResidentStage`` on the device pool: host inputs checked against
    the stage's specs (device tensors were checked when their stage produced them), outputs
    checked and left where the stage made them. Returns the names left on the device."""
    import torch  # loaded already by the torch stage

    from taas.stages.device_tensors import check_on_device

    owner = stage.qualified_name
    host: dict[str, np.ndarray] = {}
    for spec in stage.INPUTS:
        if spec.name in tensors.on_device:
            continue
        if spec.name not in tensors.host_pool:
            raise InputError(f"{owner} needs tensor {spec.name!r}; got "
                             f"{sorted({*tensors.host_pool, *tensors.on_device})}")
        host[spec.name] = spec.check(tensors.host_pool[spec.name], owner=owner)
    validate_event(host, tuple(s for s in stage.INPUTS if s.name in host), owner=owner)
    tensors.host_inputs = host
    try:
        out = stage.compute_on_device(tensors)  # type: ignore[attr-defined]
    finally:
        tensors.host_inputs = {}
    left = []
    for spec in stage.OUTPUTS:
        if spec.name not in out:
            raise InputError(f"{owner} did not produce tensor {spec.name!r}; got {sorted(out)}")
        value = out[spec.name]
        if isinstance(value, torch.Tensor):
            tensors.put(spec.name, check_on_device(spec, value, owner=owner))
            left.append(spec.name)
        else:
            tensors.put_host(spec.name, spec.check(value, owner=owner))
    return left
