"""OpenCL front end on a real GPU: the device is a GPU, named as such, and outputs equal the CPU's.

Skips unless an OpenCL GPU device with float64 exists (tests/backends/test_gpu_frontend.py runs
the same checks on PoCL's CPU device everywhere else). On a GPU the clustering floats may
differ from the CPU by rounding only (1e-12), should a driver fuse multiply-adds despite the
kernels' FP_CONTRACT OFF.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyopencl", reason="pyopencl is not installed")

from backends.cpu.clustering import CpuClustering
from backends.cpu.spacepoints import CpuSpacepoints
from backends.gpu.clustering import GpuClustering
from backends.gpu.opencl import OpenClConfig, device_kind, get_runtime, has_fp64, list_devices
from backends.gpu.spacepoints import GpuSpacepoints
from taas.detector import Detector
from taas.edm import Cells, Measurements
from taas.reco.clustering import ClusteringConfig
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml

_GPUS = [d for d in list_devices() if device_kind(d) == "GPU"]
if not any(has_fp64(d) for d in _GPUS):
    found = ", ".join(d.name for d in _GPUS) or "none"
    pytest.skip(f"no OpenCL GPU device with cl_khr_fp64 (GPU devices found: {found})",
                allow_module_level=True)

from tests.backends.test_gpu_frontend import PATTERNS, assert_same_outputs  # noqa: E402
from tests.conftest import tiny_sim_dir  # noqa: E402, F401  (session fixture, re-exported)
from tests.reco.test_clustering import GRID, make_cells, toy_detector  # noqa: E402

GPU_ONLY = OpenClConfig(allow_cpu_device=False)


def gpu_chain_matches_cpu(detector: Detector, cells: Cells,
                          config: ClusteringConfig | None = None) -> int:
    """Clustering and space points on the GPU equal the CPU stages'; returns measurements."""
    clustering = GpuClustering(detector, config, opencl=GPU_ONLY)
    assert clustering.device.endswith("(GPU)")
    out = clustering.run(cells.to_tensors())
    assert_same_outputs(CpuClustering(detector, config).run(cells.to_tensors()), out,
                        atol=1e-12)
    meas = Measurements.from_tensors(out).to_tensors()
    points = GpuSpacepoints(detector, opencl=GPU_ONLY).run(meas)
    assert_same_outputs(CpuSpacepoints(detector).run(meas), points, atol=1e-9)
    return len(meas["measurements.local_u"])


def test_runtime_picks_and_names_a_gpu():
    runtime = get_runtime(GPU_ONLY)
    assert runtime.description.startswith("OpenCL ")
    assert runtime.description.endswith("(GPU)")
    assert get_runtime() is get_runtime(OpenClConfig())  # default prefers the GPU too
    assert get_runtime().description.endswith("(GPU)")


@pytest.mark.parametrize("connectivity", [4, 8])
def test_patterns_and_random_grids_on_gpu(connectivity):
    det = toy_detector()
    config = ClusteringConfig(connectivity)
    for module, ch0, ch1, value in PATTERNS.values():
        gpu_chain_matches_cpu(det, make_cells(module, ch0, ch1, value), config)
    rng = np.random.default_rng(2)
    for occupancy in (0.1, 0.5):
        parts = [np.nonzero(rng.random((n_u, n_v)) < occupancy) for n_u, n_v in GRID]
        module = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
        cells = make_cells(module, np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]),
                           rng.uniform(0.1, 1.0, len(module)))
        gpu_chain_matches_cpu(det, cells, config)


def test_simulated_tiny_event_on_gpu(tiny_sim_dir):  # noqa: F811
    from taas.events.dataset import open_dataset

    event = open_dataset(tiny_sim_dir).read(0)
    assert gpu_chain_matches_cpu(event.detector, event.cells) > 100


@needs_trackml
def test_trackml_event_on_gpu():
    from taas.detector.trackml import load_trackml_detector
    from taas.events.trackml import read_trackml_event

    detector = load_trackml_detector(TRACKML_DIR / "detectors.csv.gz")
    event = read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID, detector)
    assert gpu_chain_matches_cpu(detector, event.cells) == 5525
