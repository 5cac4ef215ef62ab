"""The runner's device residency on hand-made stages: a tensor left on the device is read there
by the next resident stage, comes to the host (counted with its producer) when a host stage
needs it, and a host stage's newer value replaces the device copy."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from taas.edm.table import TensorSpec
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PipelineSpec
from taas.stages.base import Stage
from taas.stages.device_tensors import DeviceOutputs, DeviceTensors, compute_via_device


def spec(name: str) -> TensorSpec:
    return TensorSpec(name, np.dtype("f8"), (-1,), "")


class Doubling(Stage):
    """Resident: ``a = 2 x`` on the torch CPU device."""

    NAME, BACKEND = "doubling", "gpu"
    INPUTS: ClassVar[tuple[TensorSpec, ...]] = (spec("x.v"),)
    OUTPUTS: ClassVar[tuple[TensorSpec, ...]] = (spec("a.v"),)
    torch_device = torch.device("cpu")

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return compute_via_device(self, inputs)

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        return {"a.v": tensors.get("x.v") * 2}


class HostIncrement(Stage):
    """A host stage: ``a = a + 1`` in numpy (a newer ``a``)."""

    NAME, BACKEND = "increment", "cpu"
    INPUTS: ClassVar[tuple[TensorSpec, ...]] = (spec("a.v"),)
    OUTPUTS: ClassVar[tuple[TensorSpec, ...]] = (spec("a.v"),)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"a.v": inputs["a.v"] + 1}


class Scaling(Doubling):
    """Resident: ``b = 10 a``."""

    NAME = "scaling"
    INPUTS: ClassVar[tuple[TensorSpec, ...]] = (spec("a.v"),)
    OUTPUTS: ClassVar[tuple[TensorSpec, ...]] = (spec("b.v"),)

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        return {"b.v": tensors.get("a.v") * 10}


def _pipeline(stages: list[Stage], resident: bool) -> Pipeline:
    pipeline = Pipeline(PipelineSpec("hand_made", ()), None, resident=resident)
    pipeline.stages = stages
    return pipeline


@pytest.mark.parametrize("middle", [True, False], ids=["host stage between", "adjacent"])
def test_resident_tensors_follow_the_latest_value(middle: bool) -> None:
    stages: list[Stage] = [Doubling(None), *([HostIncrement(None)] if middle else []),
                           Scaling(None)]
    x = {"x.v": np.arange(4.0)}
    want = (2 * x["x.v"] + (1 if middle else 0)) * 10
    plain = _pipeline(stages, resident=False).run(x)
    resident = _pipeline(stages, resident=True).run(x)
    for result in (plain, resident):
        np.testing.assert_array_equal(result.tensors["b.v"], want)
        np.testing.assert_array_equal(result.tensors["a.v"], want / 10)
    up_down = {t.stage: (t.transfers.by_kind["handover"].to_device,
                         t.transfers.by_kind["handover"].to_host)
               for t in resident.timings if t.transfers.by_kind}
    if middle:
        # a.v comes back for the host stage (counted with doubling); its newer value goes up
        assert up_down == {"doubling": (1, 1), "scaling": (1, 1)}
    else:
        # a.v stays: scaling reads it on the device; both come back once, for the caller
        assert up_down == {"doubling": (1, 1), "scaling": (0, 1)}
    assert {t.stage: (t.transfers.by_kind["handover"].to_device,
                      t.transfers.by_kind["handover"].to_host)
            for t in plain.timings if t.transfers.by_kind} == {"doubling": (1, 1),
                                                               "scaling": (1, 1)}


def test_outputs_not_asked_for_stay_on_the_device() -> None:
    stages: list[Stage] = [Doubling(None), Scaling(None)]
    result = _pipeline(stages, resident=True).run({"x.v": np.arange(3.0)}, outputs=["b.v"])
    assert "a.v" not in result.tensors
    np.testing.assert_array_equal(result.tensors["b.v"], np.arange(3.0) * 20)
    assert sum(t.transfers.by_kind["handover"].to_host for t in result.timings
               if t.transfers.by_kind) == 1
