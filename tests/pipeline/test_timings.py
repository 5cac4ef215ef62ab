from __future__ import annotations

import resource

import pytest

from taas.pipeline.timings import loglog_slopes, prefault_memory


def test_prefault_memory_touches_every_page() -> None:
    """A quarter GiB rounds up to one GiB block whose every 4 KiB page is written: the process
    takes page faults (at least one per 2 MiB huge page, one per 4 KiB page without them)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = prefault_memory(0.25)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert seconds > 0.0
    assert faults >= (1 << 30) // (2 << 20)
    assert prefault_memory(0) < 0.01  # nothing asked, nothing touched


def test_loglog_slopes_recovers_power_laws() -> None:
    sizes = [1e3, 1e4, 1e5]
    slopes = loglog_slopes(sizes, [{"lin": 2e-3 * n, "quad": 1e-9 * n * n} for n in sizes])
    assert slopes["lin"] == pytest.approx(1.0)
    assert slopes["quad"] == pytest.approx(2.0)
