"""The bridge (prototrack_seeding) with its array work on a real CUDA device gives the numpy
bridge's seeds, and how long each takes on a ``medium`` event.

Skips unless torch sees a CUDA device (``tests/traccc_bridge/test_bridge_torch.py`` runs the
same code on torch's CPU device). float64 on CUDA as on the CPU: the same seeds, measurement
lists and surface order, start parameters and covariances within 1e-9 relative (CUDA's libm
differs from glibc's in the last ulp); the seeds' float32 vertex z within 1e-6 relative (the
line fit's segment sums use atomics on CUDA, in no fixed order, so the float64 sum may round
to the neighbouring float32).

The event: ``TAAS_MEDIUM_SIM_DIR`` (a ``medium`` simulation with seed 11, as
``docs/gpu_machine.md`` carries to a GPU machine without ACTS), else simulated here when pyacts
is installed, else the test skips. Proto-tracks from truth (each particle's measurements,
shuffled, some repeated, two particles merged: ``_truth_prototracks``), so that the check does
not need the GNN's models. Prints the stage's time per event on CUDA and with numpy (same
process, after a warm-up, best of ``REPEATS``) for the default configuration (supplementary
seeding of the whole event: host work on both sides) and without supplementary seeding (the
part that moves to the device), and the host <-> device copies (``-s`` to see them).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

from backends.cpu.prototrack_seeding import CpuPrototrackSeeding  # noqa: E402
from backends.gpu.prototrack_seeding import GpuPrototrackSeeding  # noqa: E402
from taas.events.presets import PRESETS  # noqa: E402
from taas.stages.base import Stage  # noqa: E402
from taas.stages.devices import runs_on_gpu  # noqa: E402
from tests.traccc_bridge.test_bridge_torch import (  # noqa: E402
    assert_same_stage_outputs,
    bridge_inputs,
)
from traccc_bridge.config import TracccSeedingConfig  # noqa: E402

MEDIUM_SEED = 11
REPEATS = 5
CONFIGS = {"default": TracccSeedingConfig(),
           "no supplementary": TracccSeedingConfig(supplementary_seeding="none")}


@pytest.fixture(scope="module")
def medium_sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from taas.events.simulation import check_simulated, simulate

    preset = PRESETS["medium"]
    want = {"seed": MEDIUM_SEED, "vertices": preset.vertices,
            "particles_per_vertex": preset.particles_per_vertex}
    if given := os.environ.get("TAAS_MEDIUM_SIM_DIR"):
        return check_simulated(given, want, min_events=1)
    pytest.importorskip("acts", reason="no TAAS_MEDIUM_SIM_DIR and no pyacts to simulate one")
    return simulate(tmp_path_factory.mktemp("medium_sim"), events=1, vertices=preset.vertices,
                    particles_per_vertex=preset.particles_per_vertex, seed=MEDIUM_SEED,
                    progress=False)


@pytest.fixture(scope="module")
def medium_bridge_inputs(medium_sim_dir):
    """The prototrack_seeding stage's inputs on the first medium event."""
    return bridge_inputs(medium_sim_dir)


def best_time(stage: Stage, inputs: dict) -> tuple[dict, float]:
    """The stage's outputs and its best time of ``REPEATS`` runs after a warm-up (the outputs
    are host arrays: each run ends with its downloads, so nothing is left queued)."""
    out = stage.run(inputs)
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        stage.run(inputs)
        seconds.append(time.perf_counter() - start)
    return out, min(seconds)


@pytest.mark.gpu
@pytest.mark.parametrize("name", CONFIGS)
def test_cuda_bridge_equals_numpy_on_a_medium_event(medium_bridge_inputs, name):
    detector, tensors = medium_bridge_inputs
    config = CONFIGS[name]
    gpu = GpuPrototrackSeeding(detector, config)
    assert gpu.device.startswith("cuda")
    assert runs_on_gpu(gpu.device)
    got, cuda_s = best_time(gpu, tensors)
    expected, numpy_s = best_time(CpuPrototrackSeeding(detector, config), tensors)
    assert len(expected["seeds.quality"]) > 1000
    assert_same_stage_outputs(got, expected, float32_rtol=1e-6)
    moved = gpu.transfers
    assert moved["to_device"] >= 4
    assert moved["to_host"] >= 8
    print(f"prototrack_seeding ({name}) on a medium event "
          f"({len(tensors['measurements.local_u'])} measurements, "
          f"{len(tensors['prototracks.offsets']) - 1} proto-tracks, "
          f"{len(expected['seeds.quality'])} seeds): CUDA {cuda_s * 1e3:.1f} ms on "
          f"{torch.cuda.get_device_name()}, numpy {numpy_s * 1e3:.1f} ms; copies "
          f"{moved['to_device']} up ({moved['to_device_bytes'] / 1e6:.2f} MB), "
          f"{moved['to_host']} down ({moved['to_host_bytes'] / 1e6:.2f} MB)")
