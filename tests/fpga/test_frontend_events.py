"""FPGA front end against the CPU stages on a simulated ``small`` event (one of the issue's
targets; ``medium`` events give the same agreement, see ``backends.fpga.frontend``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.optional import missing_modules

if missing_modules("fpga"):
    pytest.skip("the FPGA C simulation needs hls4ml's ap_types: pip install 'taas[fpga]'",
                allow_module_level=True)

from backends.cpu.spacepoints import CpuSpacepoints
from backends.fpga.spacepoints import FpgaSpacepoints
from taas.edm import Measurements
from taas.events.dataset import open_dataset
from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from tests.fpga.test_frontend import assert_same_points, cluster_both

pytestmark = pytest.mark.fpga


def test_small_event_front_end_matches_cpu(tmp_path: Path):
    preset = PRESETS["small"]
    simulate(tmp_path, events=1, vertices=preset.vertices,
             particles_per_vertex=preset.particles_per_vertex, seed=7, progress=False)
    dataset = open_dataset(tmp_path)
    event = dataset.read(dataset.event_ids[0])
    want, got = cluster_both(event.detector, event.cells)
    n_measurements = len(Measurements.from_tensors(got))
    assert n_measurements > 3000
    assert np.array_equal(np.unique(want["clusters.cluster_id"]), np.arange(n_measurements))
    meas = Measurements.from_tensors(got).to_tensors()
    assert_same_points(CpuSpacepoints(event.detector).run(meas),
                       FpgaSpacepoints(event.detector).run(meas))
