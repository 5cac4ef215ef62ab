"""The scaling benchmarks' shared runner: presets take turns within each pass, every pass is
kept, and the slopes come out of the medians and of each pass.

``scaling_runs.py`` lives in ``benchmarks/`` (scripts, not a package), so it is loaded by path.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_module import load_script

from taas.pipeline.timings import FILE_NAME, median_stage_seconds, write_timings


@pytest.fixture(scope="module")
def scaling() -> ModuleType:
    return load_script("scaling_runs.py", "scaling_runs")


def test_presets_take_turns_and_every_pass_is_kept(scaling: ModuleType, tmp_path: Path) -> None:
    """A stage whose time grows as size^1.5, with the second pass twice as slow everywhere (a
    slow spell of the machine): the passes alternate between the presets, each pass keeps its
    own medians, and both the pooled medians and each pass give the slope 1.5."""
    sizes = {"small": 1000.0, "medium": 8000.0, "large": 32000.0}
    calls: list[tuple[str, int]] = []

    def reconstruct_pass(name: str, i: int) -> Path:
        calls.append((name, i))
        out = tmp_path / f"{name}-{i}"
        out.mkdir()
        t = 1e-6 * sizes[name] ** 1.5 * (2.0 if i == 1 else 1.0)
        write_timings(out / FILE_NAME, [
            {"event_id": e, "stage": "seeding", "backend": "cpu", "device": "cpu",
             "seconds": t * (1.0 + 0.1 * e)} for e in range(2)])
        return out

    rows, per_pass, wall = scaling.interleaved_passes(list(sizes), 2, reconstruct_pass)
    assert calls == [("small", 0), ("medium", 0), ("large", 0),
                     ("small", 1), ("medium", 1), ("large", 1)]
    assert {name: len(r) for name, r in rows.items()} == dict.fromkeys(sizes, 4)
    for name in sizes:
        first, second = (p["seeding"] for p in per_pass[name])
        assert second == pytest.approx(2.0 * first)
        assert wall[name] >= 0.0
    results = [{"stage_s_per_event": median_stage_seconds(rows[name]),
                "stage_s_per_event_by_pass": per_pass[name]} for name in sizes]
    fitted = scaling.slopes(list(sizes.values()), results)
    assert fitted["median"]["seeding"] == pytest.approx(1.5)
    assert [p["seeding"] for p in fitted["per_pass"]] == pytest.approx([1.5, 1.5])
    assert scaling.slopes([1000.0], results[:1]) == {"median": None, "per_pass": None}
