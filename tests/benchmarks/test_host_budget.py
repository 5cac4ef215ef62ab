"""The host budget benchmark's step timer: every call of a wrapped function is timed once
(a call inside another timed call counts for the outer one only), class methods and module
functions alike, and the originals come back afterwards. The clock is a fake one that the
functions advance, so the sums are exact."""

from __future__ import annotations

import sys
import threading
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


def _on_device(seconds: float) -> float:
    return _Clock.advance(seconds)


def _outer(geometry: _Geometry, own: float, inner: float, device: float = 0.0) -> float:
    _Clock.advance(own)
    if device:
        _on_device(device)
    return geometry.lookup(inner) + 1.0


def test_nested_calls_count_once_and_originals_return(host_budget: ModuleType,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_budget.time, "perf_counter", lambda: _Clock.now)
    module = sys.modules[__name__]
    steps = {"outer": (__name__, "_outer"), "lookup": (__name__, "_Geometry.lookup")}
    original_outer, original_lookup = _outer, _Geometry.lookup
    geometry = _Geometry()
    device = {"on_device": (__name__, "_on_device")}
    with host_budget.timed_steps(steps, device) as times:
        assert module._outer(geometry, 1.0, 4.0) == 5.0  # its lookup: the outer's time
        assert geometry.lookup(16.0) == 16.0
        assert geometry.lookup(64.0) == 64.0
        assert module._outer(geometry, 256.0, 2.0, device=1024.0) == 3.0
    # the outer step: its own and its lookups' time, less the device work inside it
    assert times.host == {"outer": 5.0 + 258.0, "lookup": 80.0}
    assert times.inclusive == {"outer": 5.0 + 1282.0, "lookup": 4.0 + 80.0 + 2.0,
                               "on_device": 1024.0}
    assert times.overlapped == {"outer": 0.0, "lookup": 0.0}
    assert module._outer is original_outer
    assert _Geometry.lookup is original_lookup


def test_calls_on_other_threads_are_overlapped_not_host(host_budget: ModuleType,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_budget.time, "perf_counter", lambda: _Clock.now)
    steps = {"outer": (__name__, "_outer"), "lookup": (__name__, "_Geometry.lookup")}
    module = sys.modules[__name__]
    with host_budget.timed_steps(steps) as times:
        worker = threading.Thread(target=module._outer, args=(_Geometry(), 8.0, 2.0))
        worker.start()
        worker.join()
        _Geometry().lookup(1.0)
    assert times.host == {"outer": 0.0, "lookup": 1.0}
    assert times.overlapped == {"outer": 10.0, "lookup": 0.0}


def test_every_host_step_names_a_function_that_exists(host_budget: ModuleType) -> None:
    with host_budget.timed_steps(host_budget.HOST_STEPS, host_budget.DEVICE_WORK) as times:
        assert set(times.host) == set(host_budget.HOST_STEPS)
