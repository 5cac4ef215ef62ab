"""The runner's early work (``taas.stages.base.EarlyWork``) on hand-made stages: a stage is
offered its early inputs as soon as an earlier stage has made them, before the stages in
between run, never once its own turn has come, and is told to drop unused work at the end of
every run, a failed one too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pytest

from taas.edm.table import TensorSpec
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PipelineSpec
from taas.stages.base import EarlyWork, Stage


def spec(name: str) -> TensorSpec:
    return TensorSpec(name, np.dtype("f8"), (-1,), "")


class Step(Stage):
    """``out = in + 1``, logging its run."""

    BACKEND = "cpu"

    def __init__(self, name: str, source: str, target: str, log: list[str]) -> None:
        super().__init__(None)
        self.NAME, self.log = name, log
        self.INPUTS, self.OUTPUTS = (spec(source),), (spec(target),)  # type: ignore[misc]

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.log.append(f"run {self.NAME}")
        if self.NAME == "failing":
            raise RuntimeError("this stage fails")
        return {self.OUTPUTS[0].name: next(iter(inputs.values())) + 1}


class Late(Step):
    """Reads ``b`` (made by the second stage) at its turn, ``a`` (made by the first) early:
    its output is ``b`` + the early sum of ``a``, which it computes itself if not given."""

    EARLY_INPUTS: ClassVar[tuple[str, ...]] = ("a.v",)

    def __init__(self, log: list[str]) -> None:
        super().__init__("late", "b.v", "c.v", log)
        self.INPUTS = (spec("a.v"), spec("b.v"))  # type: ignore[misc]
        self.early: tuple[np.ndarray, float] | None = None

    def start_early(self, inputs: Mapping[str, np.ndarray]) -> None:
        self.log.append("early late")
        self.early = (inputs["a.v"], float(inputs["a.v"].sum()))

    def drop_early(self) -> None:
        self.log.append("drop late")
        self.early = None

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.log.append("run late")
        early, self.early = self.early, None
        total = early[1] if early is not None and early[0] is inputs["a.v"] else \
            float(inputs["a.v"].sum())
        return {"c.v": inputs["b.v"] + total}


def _pipeline(stages: list[Stage]) -> Pipeline:
    pipeline = Pipeline(PipelineSpec("hand_made", ()), None)
    pipeline.stages = stages
    return pipeline


def test_early_work_starts_once_its_inputs_exist() -> None:
    log: list[str] = []
    late = Late(log)
    assert isinstance(late, EarlyWork)
    stages: list[Stage] = [Step("first", "x.v", "a.v", log), Step("second", "a.v", "b.v", log),
                           late]
    x = np.arange(3.0)
    out = _pipeline(stages).run({"x.v": x}).tensors
    np.testing.assert_array_equal(out["c.v"], x + 2 + (x + 1).sum())
    assert log == ["run first", "early late", "run second", "run late", "drop late"]


def test_no_early_work_when_its_inputs_come_just_before_its_turn() -> None:
    log: list[str] = []
    stages: list[Stage] = [Step("second", "x.v", "b.v", log), Step("first", "x.v", "a.v", log),
                           Late(log)]
    _pipeline(stages).run({"x.v": np.arange(3.0)})
    assert log == ["run second", "run first", "run late", "drop late"]


def test_given_inputs_start_early_work_before_the_first_stage() -> None:
    log: list[str] = []
    stages: list[Stage] = [Step("second", "a.v", "b.v", log), Late(log)]
    _pipeline(stages).run({"a.v": np.arange(3.0)})
    assert log == ["early late", "run second", "run late", "drop late"]


def test_a_failed_run_drops_started_work() -> None:
    log: list[str] = []
    stages: list[Stage] = [Step("first", "x.v", "a.v", log), Step("failing", "x.v", "b.v", log),
                           Late(log)]
    with pytest.raises(RuntimeError, match="this stage fails"):
        _pipeline(stages).run({"x.v": np.arange(3.0)})
    assert log == ["run first", "early late", "run failing", "drop late"]
