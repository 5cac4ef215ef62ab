"""FPGA front end (HLS C++ clustering and space points in C simulation) against the CPU stages.

Cell sets, sizes, counts and the measurement order must be identical; positions within the
fixed-point resolution the kernels promise (``backends.fpga.frontend``): the centroid to
2^-12 of a pitch, space points to 3e-5 mm, angles and eta to 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.optional import missing_modules

if missing_modules("fpga"):
    pytest.skip("the FPGA C simulation needs hls4ml's ap_types: pip install 'taas[fpga]'",
                allow_module_level=True)

from backends.cpu.clustering import CpuClustering
from backends.cpu.spacepoints import CpuSpacepoints
from backends.fpga.clustering import FpgaClustering
from backends.fpga.frontend import (
    ANGLE_TOLERANCE,
    CENTROID_TOLERANCE_PITCH,
    DEVICE,
    POSITION_TOLERANCE_MM,
    EmulationConfig,
    frontend_library,
    max_cells_per_module,
)
from backends.fpga.spacepoints import FpgaSpacepoints
from taas.detector import Detector, Modules
from taas.detector.modules import ROTATION_COLUMNS
from taas.edm import Cells, Clusters, Measurements, Spacepoints
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.clustering import ClusteringConfig
from taas.stages.registry import resolve
from tests.reco.test_clustering import GRID, make_cells, random_cells, toy_detector
from tests.reco.test_spacepoints import make_measurements, rotated_detector

pytestmark = pytest.mark.fpga

#: Hand-made patterns on the toy detector: (module index, ch0, ch1, value) per cell.
PATTERNS = {
    "single_cell": ([1], [7], [3], [0.4]),
    "diagonal_v": ([0, 0, 0], [3, 4, 5], [3, 4, 3], [1.0, 2.0, 1.0]),
    "staircase": ([0] * 4, [3, 3, 4, 4], [3, 4, 4, 5], [0.5, 1.0, 1.5, 2.0]),
    "duplicates": ([0, 0, 0, 0], [5, 5, 6, 20], [5, 5, 5, 20], [1.0, 3.0, 1.0, 1.0]),
    "zero_and_negative": ([0] * 4, [1, 2, 10, 11], [1, 1, 1, 1], [0.0, 0.0, 1.0, -1.0]),
    "module_edges": ([0, 1, 0, 1, 2], [GRID[0, 0] - 1, 0, 0, 0, 0], [0, 0, 3, 3, 3],
                     [1.0, 1.0, 2.0, 1.0, 0.5]),
    "corner_chain": ([1] * 5, [0, 1, 2, 3, 3], [0, 1, 2, 3, 7], [1.0] * 5),
    "tiny_and_large_values": ([2] * 3, [4, 4, 5], [9, 10, 10], [1e-6, 3.5, 2e-5]),
}


def cluster_both(detector: Detector, cells: Cells, config: ClusteringConfig | None = None,
                 threads: int = 2) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """CPU and FPGA clustering outputs, after checking that they agree."""
    want = CpuClustering(detector, config).run(cells.to_tensors())
    got = FpgaClustering(detector, config, EmulationConfig(threads)).run(cells.to_tensors())
    assert_same_clusters(detector, want, got)
    return want, got


def assert_same_clusters(detector: Detector, want: dict[str, np.ndarray],
                         got: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["clusters.cluster_id"], want["clusters.cluster_id"])
    w, g = Measurements.from_tensors(want), Measurements.from_tensors(got)
    for name in ("module_key", "size_u", "size_v", "n_cells"):
        np.testing.assert_array_equal(getattr(g, name), getattr(w, name), err_msg=name)
    rows = detector.index_of(w.module_key)
    for axis in ("u", "v"):
        pitch = detector.modules[f"pitch_{axis}"][rows]
        shift = np.abs(getattr(g, f"local_{axis}") - getattr(w, f"local_{axis}")) / pitch
        assert shift.max(initial=0) <= CENTROID_TOLERANCE_PITCH, axis
        np.testing.assert_allclose(getattr(g, f"var_{axis}"), getattr(w, f"var_{axis}"),
                                   rtol=1e-4, atol=0, err_msg=f"var_{axis}")
    assert np.all(np.abs(g.charge - w.charge) <= 1e-6 * w.n_cells), (g.charge, w.charge)


def assert_same_points(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
    for table in (Spacepoints, SpacepointFeatures):
        w, g = table.from_tensors(want), table.from_tensors(got)
        for spec in table.SPECS:
            a, b = getattr(g, spec.name), getattr(w, spec.name)
            if a.dtype.kind != "f" or spec.name == "charge":
                np.testing.assert_array_equal(a, b, err_msg=spec.name)
                continue
            tol = POSITION_TOLERANCE_MM if spec.name in (
                "x", "y", "z", "r", "extent_u", "extent_v", "gx", "gy", "gz") else ANGLE_TOLERANCE
            np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=spec.name)


def big_module_detector(n_u: int = 80, n_v: int = 64) -> Detector:
    """One flat module with enough channels to overfill the kernel's module buffer."""
    rot = np.eye(3).reshape(9)
    return Detector(Modules(
        module_key=np.array([11], np.uint64), volume_id=[8], layer_id=[2], module_id=[0],
        cx=[0.0], cy=[30.0], cz=[0.0], **{c: [rot[i]] for i, c in enumerate(ROTATION_COLUMNS)},
        thickness=[0.15], min_hu=[n_u * 0.05 / 2], max_hu=[n_u * 0.05 / 2], hv=[n_v * 0.05 / 2],
        pitch_u=[0.05], pitch_v=[0.05], n_u=[n_u], n_v=[n_v]), name="big")


def test_stages_are_registered_and_say_they_are_emulated():
    det = toy_detector()
    for stage_name, cls in (("clustering", FpgaClustering), ("spacepoints", FpgaSpacepoints)):
        assert resolve(stage_name, "fpga") is cls
        assert cls(det).device == DEVICE
    assert "C simulation" in DEVICE


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_hand_made_patterns_match_cpu(pattern, connectivity):
    module, ch0, ch1, value = PATTERNS[pattern]
    for weighted in (True, False):
        cluster_both(toy_detector(), make_cells(module, ch0, ch1, value),
                     ClusteringConfig(connectivity, weighted))


def test_diagonal_neighbours_join_only_with_8_connectivity():
    cells = make_cells(*PATTERNS["diagonal_v"])
    _, eight = cluster_both(toy_detector(), cells, ClusteringConfig(8))
    _, four = cluster_both(toy_detector(), cells, ClusteringConfig(4))
    np.testing.assert_array_equal(eight["clusters.cluster_id"], [0, 0, 0])
    np.testing.assert_array_equal(four["clusters.cluster_id"], [0, 1, 2])


def test_centroid_by_hand():
    """Two cells of one column, values 1 and 3: the centroid sits 3/4 of a pitch along v from
    the first cell's centre, the v variance is (3/16 + 1/12) pitch^2."""
    det = toy_detector()
    _, got = cluster_both(det, make_cells([2, 2], [4, 4], [9, 10], [1.0, 3.0]))
    m = Measurements.from_tensors(got)
    pitch_u, pitch_v = 0.1, 0.2
    assert abs(m.local_u[0] - (-GRID[2, 0] * pitch_u / 2 + 4.5 * pitch_u)) < 1e-6
    assert abs(m.local_v[0] - (-GRID[2, 1] * pitch_v / 2 + 10.25 * pitch_v)) < 1e-6
    assert abs(m.var_v[0] - (3 / 16 + 1 / 12) * pitch_v**2) < 1e-7


def test_a_module_with_many_clusters_and_random_occupancy():
    """A 4-connectivity checkerboard (every cell its own cluster, 600 on one module) and random
    occupancies on shuffled cells, on 1 and 3 threads."""
    n_u, n_v = GRID[0]
    u, v = np.nonzero((np.add.outer(np.arange(n_u), np.arange(n_v)) % 2) == 0)
    cells = make_cells(np.zeros(len(u), int), u, v)
    _, got = cluster_both(toy_detector(), cells, ClusteringConfig(4))
    assert len(Measurements.from_tensors(got)) == n_u * n_v // 2
    rng = np.random.default_rng(5)
    for occupancy in (0.1, 0.4, 0.7):
        cells = random_cells(rng, occupancy)
        for threads in (1, 3):
            cluster_both(toy_detector(), cells, threads=threads)


def test_module_buffer_limit():
    """A module filled to the buffer's capacity clusters like the CPU; one cell more is refused
    with an error naming the module and the limit, before the kernel sees it."""
    limit = max_cells_per_module()
    det = big_module_detector()
    u, v = np.divmod(np.arange(80 * 64), 64)
    keys = det.modules["module_key"]
    full = Cells(module_key=np.repeat(keys, limit), ch0=u[:limit], ch1=v[:limit],
                 value=np.linspace(0.1, 1.0, limit), timestamp=np.zeros(limit),
                 hit_id=np.full(limit, -1))
    cluster_both(det, full)
    over = Cells(module_key=np.repeat(keys, limit + 1), ch0=u[:limit + 1], ch1=v[:limit + 1],
                 value=np.ones(limit + 1), timestamp=np.zeros(limit + 1),
                 hit_id=np.full(limit + 1, -1))
    with pytest.raises(InputError, match=rf"module 11 has {limit + 1} cells.*{limit}"):
        FpgaClustering(det).run(over.to_tensors())


def test_values_the_charge_word_cannot_hold_are_refused():
    cells = make_cells([0, 0], [3, 4], [3, 3], [1.0, 5.0])
    with pytest.raises(InputError, match=r"cell value 5\.0 is outside"):
        FpgaClustering(toy_detector()).run(cells.to_tensors())


def test_kernel_flags_an_overfull_module_itself():
    """The kernel's own overflow flag (its second line of defence) stops the bridge."""
    lib = frontend_library()
    n = max_cells_per_module() + 1
    u, v = np.divmod(np.arange(n, dtype=np.int32), 64)
    status = lib.taas_cluster_modules(
        1, np.array([0, n], np.int64), u.astype(np.int32), v.astype(np.int32),
        np.ones(n, np.float32), np.array([0.05, 0.05, -2.0, -1.6]), 1, 1,
        np.empty(n, np.int64), np.empty((n, 5)), np.empty((n, 4), np.int32),
        np.zeros(1, np.int64))
    assert status == 1


def test_spacepoints_on_rotated_modules_match_cpu():
    det = rotated_detector()
    rng = np.random.default_rng(3)
    meas = make_measurements(det, rng.integers(0, len(det), 300), rng).to_tensors()
    want = CpuSpacepoints(det).run(meas)
    got = FpgaSpacepoints(det, EmulationConfig(3)).run(meas)
    assert_same_points(want, got)


def test_point_on_the_beam_axis_has_infinite_eta_like_cpu():
    det = rotated_detector()  # module 0: unrotated, centred on the origin
    meas = Measurements(module_key=det.modules["module_key"][:1], local_u=[0.0], local_v=[0.0],
                        var_u=[1e-4], var_v=[1e-2], size_u=[1], size_v=[1], n_cells=[1],
                        charge=[1.0])
    got = Spacepoints.from_tensors(FpgaSpacepoints(det).run(meas.to_tensors()))
    assert got.r[0] == 0
    assert np.isposinf(got.eta[0])


def test_spacepoints_refuse_what_the_kernel_words_cannot_hold():
    det = rotated_detector()
    rng = np.random.default_rng(4)
    meas = make_measurements(det, np.zeros(3, int), rng)
    meas.local_u[1] = 200.0
    with pytest.raises(InputError, match="local_u"):
        FpgaSpacepoints(det).run(meas.to_tensors())


def test_emulation_config_is_validated():
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="threads"):
            EmulationConfig(bad)  # type: ignore[arg-type]


def test_tiny_event_front_end_matches_cpu(tiny_sim_dir: Path):
    dataset = open_dataset(tiny_sim_dir)
    event = dataset.read(dataset.event_ids[0])
    det = event.detector
    want, got = cluster_both(det, event.cells)
    assert len(np.unique(got["clusters.cluster_id"])) > 100
    meas = Measurements.from_tensors(got).to_tensors()
    assert_same_points(CpuSpacepoints(det).run(meas), FpgaSpacepoints(det).run(meas))
    assert Clusters.from_tensors(want).cluster_id.max() == len(Measurements.from_tensors(got)) - 1
