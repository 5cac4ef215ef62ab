"""The host budget benchmark's step timer: every call of a wrapped function is timed once
(a call inside another timed call counts for the outer one only), class methods and module
functions alike, and the originals come back afterwards. The clock is a fake one that the
functions advance, so the sums are exact."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest
from script_module import BENCHMARKS, load_script


@pytest.fixture(scope="module")
def host_budget() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # it imports its sibling scaling_runs
    try:
        return load_script("host_budget.py", "host_budget")
    finally:
        sys.path.remove(str(BENCHMARKS))


class _Clock:
    now = 0.0

    @classmethod
    def advance(cls, seconds: float) -> float:
        cls.now += seconds
        return seconds


class _Geometry:
    def lookup(self, seconds: float) -> float:
        return _Clock.advance(seconds)


def _outer(geometry: _Geometry, own: float, inner: float) -> float:
    _Clock.advance(own)
    return geometry.lookup(inner) + 1.0


def test_nested_calls_count_once_and_originals_return(host_budget: ModuleType,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_budget.time, "perf_counter", lambda: _Clock.now)
    module = sys.modules[__name__]
    steps = {"outer": (__name__, "_outer"), "lookup": (__name__, "_Geometry.lookup")}
    original_outer, original_lookup = _outer, _Geometry.lookup
    geometry = _Geometry()
    with host_budget.timed_steps(steps) as seconds:
        assert module._outer(geometry, 1.0, 4.0) == 5.0  # its lookup: the outer's time
        assert geometry.lookup(16.0) == 16.0
        assert geometry.lookup(64.0) == 64.0
    assert seconds == {"outer": 5.0, "lookup": 80.0}
    assert module._outer is original_outer
    assert _Geometry.lookup is original_lookup


def test_every_host_step_names_a_function_that_exists(host_budget: ModuleType) -> None:
    with host_budget.timed_steps(host_budget.HOST_STEPS) as seconds:
        assert set(seconds) == set(host_budget.HOST_STEPS)
