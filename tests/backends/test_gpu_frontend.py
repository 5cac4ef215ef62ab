"""GPU front end (OpenCL clustering and space points): the same outputs as the CPU stages.

On a machine without a GPU the kernels run on PoCL's CPU device, and the stages must say so.
Clustering must match bit for bit (same measurements, same order, same float64 sums); space
points within 1e-9 (OpenCL's transcendental functions may differ from numpy's by a few ulp).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyopencl", reason="pyopencl is not installed")

from backends.cpu.clustering import CpuClustering
from backends.cpu.spacepoints import CpuSpacepoints
from backends.gpu.clustering import GpuClustering
from backends.gpu.opencl import (
    NoOpenClDevice,
    OpenClConfig,
    device_kind,
    get_runtime,
    list_devices,
)
from backends.gpu.spacepoints import GpuSpacepoints
from taas.detector import Detector
from taas.edm import Cells, Measurements
from taas.errors import InputError
from taas.reco.clustering import ClusteringConfig
from tests.reco.test_clustering import GRID, KEYS, make_cells, random_cells, toy_detector
from tests.reco.test_spacepoints import make_measurements, rotated_detector
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml

if not list_devices():
    pytest.skip("pyopencl finds no OpenCL platform with a device", allow_module_level=True)

#: Hand-made patterns on the toy detector: (module index, ch0, ch1, value) per cell.
PATTERNS = {
    "diagonal_v": ([0, 0, 0], [3, 4, 5], [3, 4, 3], [1.0, 2.0, 1.0]),
    "staircase": ([0] * 4, [3, 3, 4, 4], [3, 4, 4, 5], [0.5, 1.0, 1.5, 2.0]),
    "duplicates": ([0, 0, 0, 0], [5, 5, 6, 20], [5, 5, 5, 20], [1.0, 3.0, 1.0, 1.0]),
    "zero_and_negative": ([0] * 4, [1, 2, 10, 11], [1, 1, 1, 1], [0.0, 0.0, 1.0, -1.0]),
    "module_edges": ([0, 1, 0, 1, 2], [GRID[0, 0] - 1, 0, 0, 0, 0], [0, 0, 3, 3, 3],
                     [1.0, 1.0, 2.0, 1.0, 0.5]),
    "corner_chain_across_columns": ([1] * 5, [0, 1, 2, 3, 3], [0, 1, 2, 3, 7],
                                    [1.0, 1.0, 1.0, 1.0, 1.0]),
}


def assert_same_outputs(want: dict[str, np.ndarray], got: dict[str, np.ndarray],
                        atol: float = 0.0) -> None:
    """Same tensors, dtypes and shapes; integers equal, floats within ``atol`` (0: identical)."""
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        actual = got[name]
        assert actual.dtype == expected.dtype, name
        if expected.dtype.kind == "f" and atol > 0:
            np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)


def compare_clustering(detector: Detector, cells: Cells,
                       config: ClusteringConfig | None = None) -> dict[str, np.ndarray]:
    """Run both clustering stages on ``cells``, assert identical outputs, return them."""
    want = CpuClustering(detector, config).run(cells.to_tensors())
    got = GpuClustering(detector, config).run(cells.to_tensors())
    assert_same_outputs(want, got)
    return got


def compare_spacepoints(detector: Detector, measurements: dict[str, np.ndarray]) -> None:
    want = CpuSpacepoints(detector).run(measurements)
    got = GpuSpacepoints(detector).run(measurements)
    assert_same_outputs(want, got, atol=1e-9)


def compare_chain(detector: Detector, cells: Cells) -> int:
    """Clustering then space points, both compared; returns the number of measurements."""
    out = compare_clustering(detector, cells)
    measurements = Measurements.from_tensors(out).to_tensors()
    compare_spacepoints(detector, measurements)
    return len(measurements["measurements.local_u"])


# --- device and identity ---------------------------------------------------------------------
def test_stages_name_the_opencl_device_they_run_on():
    runtime = get_runtime()
    for stage in (GpuClustering(toy_detector()), GpuSpacepoints(rotated_detector())):
        assert stage.device == runtime.description
        assert stage.device.startswith("OpenCL ")
        assert stage.device.endswith(f"({device_kind(runtime.device)})")
        if not any(device_kind(d) == "GPU" for d in list_devices()):
            assert stage.device.endswith("(CPU)"), "a GPU stage on a CPU device must say so"


def test_stage_identity_and_specs_are_the_cpu_stages():
    clustering, spacepoints = GpuClustering(toy_detector()), GpuSpacepoints(rotated_detector())
    assert (clustering.qualified_name, spacepoints.qualified_name) == (
        "clustering_gpu", "spacepoints_gpu")
    assert clustering.INPUTS == CpuClustering.INPUTS
    assert clustering.OUTPUTS == CpuClustering.OUTPUTS
    assert spacepoints.INPUTS == CpuSpacepoints.INPUTS
    assert spacepoints.OUTPUTS == CpuSpacepoints.OUTPUTS


def test_cpu_device_can_be_refused():
    if any(device_kind(d) != "CPU" for d in list_devices()):
        pytest.skip("this machine has a non-CPU OpenCL device")
    with pytest.raises(NoOpenClDevice, match="GPU"):
        get_runtime(OpenClConfig(allow_cpu_device=False))


# --- clustering ------------------------------------------------------------------------------
@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_hand_made_patterns_match_cpu(pattern, connectivity):
    module, ch0, ch1, value = PATTERNS[pattern]
    cells = make_cells(module, ch0, ch1, value)
    for weighted in (True, False):
        compare_clustering(toy_detector(), cells, ClusteringConfig(connectivity, weighted))


def test_diagonal_neighbours_join_only_with_8_connectivity():
    cells = make_cells(*PATTERNS["diagonal_v"])
    eight = compare_clustering(toy_detector(), cells, ClusteringConfig(8))
    four = compare_clustering(toy_detector(), cells, ClusteringConfig(4))
    np.testing.assert_array_equal(eight["clusters.cluster_id"], [0, 0, 0])
    np.testing.assert_array_equal(four["clusters.cluster_id"], [0, 1, 2])


@pytest.mark.parametrize("connectivity", [4, 8])
def test_random_occupancy_on_shuffled_cells_matches_cpu(connectivity):
    rng = np.random.default_rng(11)
    for occupancy in (0.1, 0.35, 0.7):
        cells = random_cells(rng, occupancy)
        for weighted in (True, False):
            compare_clustering(toy_detector(), cells, ClusteringConfig(connectivity, weighted))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_one_long_serpentine_cluster(connectivity):
    """A snake filling module 0 column by column, joined at alternate ends: the longest path
    a cluster of this size can have, the worst case for label propagation."""
    n_u, n_v = GRID[0]
    ch0, ch1 = [], []
    for c in range(0, n_u, 2):
        ch0 += [c] * n_v
        ch1 += list(range(n_v))
        if c + 1 < n_u:  # connector cell on alternating ends
            ch0.append(c + 1)
            ch1.append(n_v - 1 if c % 4 == 0 else 0)
    cells = make_cells(np.zeros(len(ch0), int), ch0, ch1)
    out = compare_clustering(toy_detector(), cells, ClusteringConfig(connectivity))
    assert len(out["measurements.n_cells"]) == 1
    assert out["measurements.n_cells"][0] == len(ch0)


def test_empty_inputs_give_empty_typed_outputs():
    clusters = GpuClustering(toy_detector()).run(Cells.empty().to_tensors())
    assert len(clusters["clusters.cluster_id"]) == 0
    assert clusters["measurements.module_key"].dtype == np.uint64
    assert_same_outputs(CpuClustering(toy_detector()).run(Cells.empty().to_tensors()), clusters)
    points = GpuSpacepoints(rotated_detector()).run(Measurements.empty().to_tensors())
    assert_same_outputs(CpuSpacepoints(rotated_detector()).run(
        Measurements.empty().to_tensors()), points)
    assert all(len(v) == 0 for v in points.values())


def test_bad_cells_are_the_same_input_errors():
    stage = GpuClustering(toy_detector())
    cols = make_cells([0, 0], [1, 2], [1, 1]).columns()
    cols["module_key"] = np.array([KEYS[0], 99], np.uint64)
    with pytest.raises(InputError, match="99") as err:
        stage.run(Cells(cols).to_tensors())
    assert err.value.row == 1
    with pytest.raises(InputError, match="outside the readout grid"):
        stage.run(make_cells([0, 1], [1, 1], [1, GRID[1, 1]]).to_tensors())
    meas = make_measurements(rotated_detector(), np.array([0]), np.random.default_rng(0))
    cols = meas.columns()
    cols["module_key"] = np.array([7], np.uint64)
    with pytest.raises(InputError, match="not a module"):
        GpuSpacepoints(rotated_detector()).run(Measurements(cols).to_tensors())


# --- space points ----------------------------------------------------------------------------
def test_spacepoints_on_rotated_modules_match_cpu():
    det = rotated_detector()
    rng = np.random.default_rng(5)
    meas = make_measurements(det, rng.integers(0, len(det), 300), rng)
    cols = meas.columns()
    cols["local_u"][0] = cols["local_v"][0] = 0.0  # module 0 sits at the origin: on the z axis
    cols["module_key"][0] = det.modules["module_key"][0]
    tensors = Measurements(cols).to_tensors()
    compare_spacepoints(det, tensors)
    eta = GpuSpacepoints(det).run(tensors)["spacepoints.eta"]
    assert np.isinf(eta[0])
    assert np.all(np.isfinite(eta[1:]))


# --- whole events ----------------------------------------------------------------------------
def test_simulated_tiny_event_matches_cpu(tiny_sim_dir):
    from taas.events.dataset import open_dataset

    event = open_dataset(tiny_sim_dir).read(0)
    assert compare_chain(event.detector, event.cells) > 100


@needs_trackml
def test_trackml_event_matches_cpu():
    from taas.detector.trackml import load_trackml_detector
    from taas.events.trackml import read_trackml_event

    detector = load_trackml_detector(TRACKML_DIR / "detectors.csv.gz")
    event = read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID, detector)
    assert compare_chain(detector, event.cells) == 5525
