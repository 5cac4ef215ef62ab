"""How tensors flow through a pipeline's steps: its inputs, its outputs, the ensemble wiring.

The in-process runner (``taas.pipeline.runner.Pipeline``) keeps one pool of tensors: a stage takes
what it declares from the pool and adds its outputs, so a later output with the same name (the
fit's ``tracks.*`` after the CKF's) replaces an earlier one. ``PipelineGraph`` states the same
rule once, for the whole-pipeline model (which outputs to return) and for the ensemble (which
stage output feeds which stage input), so served and direct runs agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taas.edm.table import TensorSpec
from taas.errors import TaasError
from taas.service.pbtxt import EnsembleStep


def model_name(stage: str, backend: str) -> str:
    """The served model of one (stage, backend): ``clustering_cpu``."""
    return f"{stage}_{backend}"


@dataclass(frozen=True)
class StepIO:
    """The declared tensors of one pipeline step."""

    stage: str
    backend: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def model(self) -> str:
        return model_name(self.stage, self.backend)


@dataclass(frozen=True)
class PipelineGraph:
    """Inputs, outputs and wiring of an ordered list of steps."""

    steps: tuple[StepIO, ...]

    @classmethod
    def from_steps(cls, steps: Sequence[tuple[str, str]]) -> PipelineGraph:
        """Resolve each (stage, backend) in the registry and read its declared specs."""
        from taas.stages import registry

        ios = []
        for stage, backend in steps:
            impl = registry.resolve(stage, backend)
            ios.append(StepIO(stage, backend, tuple(impl.INPUTS), tuple(impl.OUTPUTS)))
        return cls(tuple(ios))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Tensors some step needs before any earlier step produced them (first need wins)."""
        produced: set[str] = set()
        needed: dict[str, TensorSpec] = {}
        for step in self.steps:
            for spec in step.inputs:
                if spec.name not in produced:
                    needed.setdefault(spec.name, spec)
            produced.update(s.name for s in step.outputs)
        return tuple(needed.values())

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Every tensor the steps produce, the last producer's spec winning (as in the pool)."""
        last: dict[str, TensorSpec] = {}
        for step in self.steps:
            for spec in step.outputs:
                last.pop(spec.name, None)  # keep the order of the final producers
                last[spec.name] = spec
        return tuple(last.values())

    def ensemble_steps(self) -> list[EnsembleStep]:
        """Ensemble wiring: each input from the latest earlier producer or the pipeline input.

        Outputs a later step overwrites get a private ensemble name (``model/tensor``) and are
        only mapped when some step reads them, since Triton wants every mapped tensor used.
        """
        final_producer = {}
        for i, step in enumerate(self.steps):
            for spec in step.outputs:
                final_producer[spec.name] = i
        consumed: set[tuple[int, str]] = set()  # (producing step, tensor) pairs read by someone
        current: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for spec in step.inputs:
                if spec.name in current:
                    consumed.add((current[spec.name], spec.name))
            for spec in step.outputs:
                current[spec.name] = i

        def ensemble_name(i: int, tensor: str) -> str:
            return tensor if final_producer[tensor] == i else f"{self.steps[i].model}/{tensor}"

        result, current = [], {}
        for i, step in enumerate(self.steps):
            input_map = {s.name: (ensemble_name(current[s.name], s.name) if s.name in current
                                  else s.name) for s in step.inputs}
            output_map = {s.name: ensemble_name(i, s.name) for s in step.outputs
                          if final_producer[s.name] == i or (i, s.name) in consumed}
            for spec in step.outputs:
                current[spec.name] = i
            result.append(EnsembleStep(step.model, input_map, output_map))
        models = [s.model for s in self.steps]
        if len(set(models)) != len(models):
            raise TaasError(f"an ensemble cannot call one model twice in this generator: {models}")
        return result
