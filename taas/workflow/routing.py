"""Which backend every stage of every selected pipeline gets, decided once at workflow start.

Rules, in order: a pipeline's own steps (``taas.pipeline.spec.PIPELINES``); then ``accel`` for
the stages the pipeline marks as accelerator stages (a ``PipelineSpec.accel_stages`` attribute,
if the spec has one; those without an ``accel`` backend go to ``cpu``, and the plan's notes say
so); then the ``routing`` map (``stage: backend`` for every pipeline having that stage,
``pipeline.stage: backend`` for one). The result is checked against the stage registry
(``taas.stages.registry``) and the machine: a (stage, backend) that is not registered, whose
module is not built or whose extra is not installed, or a gpu backend on a machine without a
GPU (unless ``allow_cpu_device``) stops the workflow with one message naming it and listing
what exists. Nothing is substituted silently.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taas.optional import MissingExtraError
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.stages import registry
from taas.workflow.config import ConfigError
from taas.workflow.devices import Devices, probe

#: Backends that need an accelerator device the machine may lack.
GPU_BACKENDS = frozenset({"gpu"})
GPU_ON_CPU_NOTE = "gpu backend on CPU device"


class PlanError(ConfigError):
    """The configuration asks for something this machine or this build cannot run."""


@dataclass(frozen=True)
class PipelinePlan:
    """One pipeline as it will run: its resolved steps and why any step differs."""

    spec: PipelineSpec
    notes: tuple[str, ...] = ()

    @property
    def steps_arg(self) -> str:
        """``clustering/cpu,spacepoints/gpu,...``: the steps as one command-line word."""
        return ",".join(f"{s}/{b}" for s, b in self.spec.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.spec.name, "steps": [list(s) for s in self.spec.steps],
                "notes": list(self.notes)}


def resolve_accel(accel: str, devices: Callable[[], Devices] = probe) -> str:
    """``auto`` becomes ``gpu`` when CUDA is present, else ``cpu``; others pass through."""
    if accel != "auto":
        return accel
    return "gpu" if devices().cuda > 0 else "cpu"


def accel_stages(spec: PipelineSpec) -> frozenset[str]:
    """Stages the pipeline runs on ``accel`` (none unless the spec declares ``accel_stages``)."""
    return frozenset(getattr(spec, "accel_stages", ()) or ())


def _split_routing(routing: Mapping[str, str], names: list[str],
                   ) -> dict[str, dict[str, str]]:
    """Per pipeline: stage -> backend, with ``pipeline.stage`` keys winning over ``stage``."""
    known_stages = {s for n in names for s, _ in PIPELINES[n].steps}
    per: dict[str, dict[str, str]] = {n: {} for n in names}
    for key, backend in routing.items():
        pipeline, _, stage = key.rpartition(".")
        if pipeline and pipeline not in per:
            raise PlanError(f"configuration key routing: {key!r} names pipeline {pipeline!r}, "
                            f"which is not selected; selected: {names}")
        targets = [pipeline] if pipeline else names
        if not any(stage in dict(PIPELINES[t].steps) for t in targets):
            raise PlanError(f"configuration key routing: no selected pipeline has a stage "
                            f"{stage!r}; stages: {sorted(known_stages)}")
        for t in targets:
            if stage in dict(PIPELINES[t].steps) and (pipeline or stage not in per[t]):
                per[t][stage] = backend
    return per


def _check_step(pipeline: str, stage: str, backend: str) -> None:
    if (stage, backend) not in registry.IMPLEMENTATIONS:
        choices = ", ".join(f"{s}/{b}" for s, b in registry.available())
        raise PlanError(f"pipeline {pipeline!r} needs stage {stage!r} on backend {backend!r}, "
                        f"which is not implemented (not registered in taas.stages.registry); "
                        f"available: {choices}")
    try:
        registry.check_installed(stage, backend)
    except MissingExtraError as exc:
        raise PlanError(f"pipeline {pipeline!r}: {exc}") from None
    module = registry.IMPLEMENTATIONS[(stage, backend)].module
    if importlib.util.find_spec(module.split(".")[0]) is None or \
            importlib.util.find_spec(module) is None:
        raise PlanError(f"pipeline {pipeline!r} needs {stage}/{backend}, registered as {module}, "
                        f"but that module is not built or not installed")


def plan_pipelines(config: Mapping[str, Any], devices: Callable[[], Devices] = probe,
                   ) -> dict[str, PipelinePlan]:
    """Every selected pipeline resolved and checked; ``PlanError`` names what is missing."""
    names = list(config["pipelines"])
    accel = resolve_accel(config["accel"], devices)
    routing = _split_routing(config.get("routing") or {}, names)
    plans = {}
    for name in names:
        base = PIPELINES[name]
        on_accel, notes = _accel_overrides(base, accel, set(routing[name]))
        overrides = on_accel | routing[name]
        spec = base.with_routing(overrides) if overrides else base
        for stage, backend in spec.steps:
            _check_step(name, stage, backend)
            if backend in GPU_BACKENDS:
                notes += _gpu_note(name, stage, backend, config, devices)
        plans[name] = PipelinePlan(spec, tuple(dict.fromkeys(notes)))
    return plans


def _accel_overrides(spec: PipelineSpec, accel: str, routed: set[str]
                     ) -> tuple[dict[str, str], list[str]]:
    """The pipeline's accelerator stages moved to ``accel``; a stage with no ``accel`` backend
    (track building has no fpga one: it walks graphs, which an FPGA does not) runs on ``cpu``
    instead, and a note says so, so that ``accel=fpga`` means "what can run there does"."""
    overrides: dict[str, str] = {}
    notes: list[str] = []
    for stage in accel_stages(spec):
        if (stage, accel) in registry.IMPLEMENTATIONS:
            overrides[stage] = accel
        elif stage not in routed:
            overrides[stage] = "cpu"
            notes.append(f"{stage}: no {accel} backend, runs on cpu")
    return overrides, notes


def _gpu_note(pipeline: str, stage: str, backend: str, config: Mapping[str, Any],
              devices: Callable[[], Devices]) -> list[str]:
    found = devices()
    if found.has_gpu:
        return []
    if not config.get("allow_cpu_device", False):
        raise PlanError(
            f"pipeline {pipeline!r} routes stage {stage!r} to backend {backend!r}, but this "
            f"machine has no GPU ({found.describe()}). Use accel=cpu / route the stage to cpu, "
            f"or set allow_cpu_device=true to run gpu backends on the CPU device "
            f"(the report then says '{GPU_ON_CPU_NOTE}').")
    return [f"{stage}: {GPU_ON_CPU_NOTE} (no GPU on this machine; {found.describe()})"]
