"""Shared fixtures: one tiny simulation per test session (ACTS is slow to start, not to run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taas.detector.detector import Detector

TINY_SEED = 42
TINY_EVENTS = 2


@pytest.fixture(scope="session")
def generic_detector() -> Detector:
    """The ACTS Generic detector with taas' segmentation."""
    from taas.detector.acts_generic import build_generic_detector

    return build_generic_detector()


@pytest.fixture(scope="session")
def tiny_sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ``tiny`` events (5 vertices x 10 particles), seed 42, in ACTS CSV.

    ``TAAS_TINY_SIM_DIR`` names the same events simulated elsewhere, for machines whose Python
    has no pyacts wheel (the GPU machine's 3.12): ``hardware_tests/`` then run there.
    """
    from taas.events.presets import PRESETS
    from taas.events.simulation import check_simulated, simulate

    preset = PRESETS["tiny"]
    if given := os.environ.get("TAAS_TINY_SIM_DIR"):
        return check_simulated(given, {"seed": TINY_SEED, "events": TINY_EVENTS,
                                       "vertices": preset.vertices,
                                       "particles_per_vertex": preset.particles_per_vertex})
    return simulate(tmp_path_factory.mktemp("tiny_sim"), events=TINY_EVENTS,
                    vertices=preset.vertices, particles_per_vertex=preset.particles_per_vertex,
                    seed=TINY_SEED, progress=False)
