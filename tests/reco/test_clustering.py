"""CPU clustering: hand-made cell patterns, a dense-grid reference, real TrackML and ACTS truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from backends.cpu.clustering import CpuClustering
from taas.detector import Detector, Modules
from taas.detector.modules import ROTATION_COLUMNS
from taas.edm import Cells, Clusters, Measurements
from taas.errors import InputError, TaasError
from taas.reco.clustering import ClusteringConfig
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml

#: Module keys of the toy detector: consecutive, so adjacent modules have adjacent keys.
KEYS = np.array([5, 6, 7], np.uint64)
PITCH = np.array([(0.05, 0.05), (0.08, 1.2), (0.1, 0.2)])  # (pitch_u, pitch_v) per module
GRID = np.array([(40, 30), (50, 8), (30, 30)])  # (n_u, n_v) per module


def toy_detector() -> Detector:
    """Three flat modules with identity rotations and different pitches."""
    n = len(KEYS)
    rot = np.tile(np.eye(3).reshape(9), (n, 1))
    hu = GRID[:, 0] * PITCH[:, 0] / 2
    hv = GRID[:, 1] * PITCH[:, 1] / 2
    return Detector(Modules(
        module_key=KEYS, volume_id=np.full(n, 8), layer_id=np.full(n, 2), module_id=np.arange(n),
        cx=np.zeros(n), cy=np.zeros(n), cz=np.arange(n) * 10.0,
        **{c: rot[:, i] for i, c in enumerate(ROTATION_COLUMNS)},
        thickness=np.full(n, 0.15), min_hu=hu, max_hu=hu, hv=hv,
        pitch_u=PITCH[:, 0], pitch_v=PITCH[:, 1], n_u=GRID[:, 0], n_v=GRID[:, 1],
    ), name="toy")


def make_cells(module: list[int] | np.ndarray, ch0: list[int] | np.ndarray,
               ch1: list[int] | np.ndarray, value: list[float] | np.ndarray | None = None,
               hit_id: list[int] | np.ndarray | None = None) -> Cells:
    """Cells on toy modules given by index into ``KEYS``."""
    n = len(ch0)
    return Cells(module_key=KEYS[np.asarray(module, int)], ch0=ch0, ch1=ch1,
                 value=np.ones(n) if value is None else value, timestamp=np.zeros(n),
                 hit_id=np.full(n, -1) if hit_id is None else hit_id)


def random_cells(rng: np.random.Generator, occupancy: float) -> Cells:
    """Every toy module (``GRID``) fired at random with ``occupancy``, cells shuffled, values
    in [-0.2, 1) so that some clusters have no positive charge."""
    parts = [np.nonzero(rng.random((n_u, n_v)) < occupancy) for n_u, n_v in GRID]
    module = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
    ch0 = np.concatenate([p[0] for p in parts])
    ch1 = np.concatenate([p[1] for p in parts])
    perm = rng.permutation(len(ch0))
    return make_cells(module[perm], ch0[perm], ch1[perm], rng.uniform(-0.2, 1.0, len(ch0)))


def cluster(cells: Cells, connectivity: int = 8, *,
            charge_weighted: bool = True) -> tuple[np.ndarray, Measurements]:
    stage = CpuClustering(toy_detector(), ClusteringConfig(connectivity, charge_weighted))
    out = stage.run(cells.to_tensors())
    return Clusters.from_tensors(out).cluster_id, Measurements.from_tensors(out)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when labels ``a`` and ``b`` group the cells identically (up to relabelling)."""
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


# --- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 6, 9, 8.0, "8", True])
def test_config_rejects_other_connectivities(bad):
    with pytest.raises(ValueError, match="connectivity"):
        ClusteringConfig(connectivity=bad)


def test_config_is_frozen_and_default_is_8():
    config = ClusteringConfig()
    assert config.connectivity == 8
    assert config.charge_weighted
    with pytest.raises(AttributeError):
        config.connectivity = 4  # type: ignore[misc]


# --- labelling -------------------------------------------------------------------------------
def test_diagonal_neighbours_join_with_8_and_split_with_4():
    cells = make_cells([0, 0, 0], [3, 4, 5], [3, 4, 3])  # a "V": corners only
    ids8, m8 = cluster(cells, 8)
    ids4, m4 = cluster(cells, 4)
    assert len(m8) == 1
    np.testing.assert_array_equal(ids8, [0, 0, 0])
    assert len(m4) == 3
    np.testing.assert_array_equal(ids4, [0, 1, 2])


def test_edge_neighbours_join_with_both():
    cells = make_cells([0] * 4, [3, 3, 4, 4], [3, 4, 4, 5])  # edge-connected staircase
    for connectivity in (4, 8):
        _, m = cluster(cells, connectivity)
        assert len(m) == 1
        assert m.n_cells[0] == 4


def test_single_cell_measurement():
    cells = make_cells([2], [7], [11], value=[0.3])
    ids, m = cluster(cells)
    np.testing.assert_array_equal(ids, [0])
    det = toy_detector()
    u, v = det.channel_to_local(np.array([2]), [7], [11])
    assert m.module_key[0] == KEYS[2]
    np.testing.assert_allclose([m.local_u[0], m.local_v[0]], [u[0], v[0]])
    np.testing.assert_allclose([m.var_u[0], m.var_v[0]], PITCH[2] ** 2 / 12)
    assert (m.size_u[0], m.size_v[0], m.n_cells[0]) == (1, 1, 1)
    assert m.charge[0] == pytest.approx(0.3)


def test_known_pattern_centroid_and_variance_by_hand():
    """An L of three cells with values 1, 2, 1 on module 0 (pitch 0.05 x 0.05, 40 x 30 cells).

    Cells (ch0, ch1): (10, 5) w=1, (11, 5) w=2, (11, 6) w=1; W = 4.
    mean ch0 = (10 + 22 + 11) / 4 = 10.75, mean ch1 = (5 + 10 + 6) / 4 = 5.25.
    var ch0 = (1 * 0.75^2 + 2 * 0.25^2 + 1 * 0.25^2) / 4 = 0.1875,
    var ch1 = (1 * 0.25^2 + 2 * 0.25^2 + 1 * 0.75^2) / 4 = 0.1875.
    u = -1.0 + (10.75 + 0.5) * 0.05 = -0.4375, v = -0.75 + (5.25 + 0.5) * 0.05 = -0.4625.
    var_u = (0.1875 + 1/12) * 0.05^2.
    """
    cells = make_cells([0, 0, 0], [10, 11, 11], [5, 5, 6], value=[1.0, 2.0, 1.0])
    _, m = cluster(cells)
    assert len(m) == 1
    np.testing.assert_allclose(m.local_u, [-0.4375])
    np.testing.assert_allclose(m.local_v, [-0.4625])
    np.testing.assert_allclose(m.var_u, [(0.1875 + 1 / 12) * 0.05**2])
    np.testing.assert_allclose(m.var_v, [(0.1875 + 1 / 12) * 0.05**2])
    assert (m.size_u[0], m.size_v[0], m.n_cells[0]) == (2, 2, 3)
    assert m.charge[0] == pytest.approx(4.0)
    # the unweighted option takes the plain mean of the centres: ch0 32/3, ch1 16/3
    _, plain = cluster(cells, charge_weighted=False)
    np.testing.assert_allclose(plain.local_u, [-1.0 + (32 / 3 + 0.5) * 0.05])
    np.testing.assert_allclose(plain.local_v, [-0.75 + (16 / 3 + 0.5) * 0.05])
    np.testing.assert_allclose(plain.var_u, [(2 / 9 + 1 / 12) * 0.05**2])


def test_many_clusters_on_one_module_match_a_dense_grid_reference():
    """Random occupancy on a grid: labels agree with scipy.ndimage.label, both connectivities."""
    rng = np.random.default_rng(3)
    n_u, n_v = GRID[0]
    for occupancy in (0.1, 0.3, 0.5):
        grid = rng.random((n_u, n_v)) < occupancy
        ch0, ch1 = np.nonzero(grid)
        cells = make_cells(np.zeros(len(ch0), int), ch0, ch1, value=rng.uniform(0.1, 1, len(ch0)))
        for connectivity, structure in ((8, np.ones((3, 3))), (4, None)):
            ref, n_ref = ndimage.label(grid, structure=structure)
            ids, m = cluster(cells, connectivity)
            assert len(m) == n_ref > 10
            assert same_partition(ids, ref[ch0, ch1])
            # measurements are ordered by first cell in (ch0, ch1) order
            first = np.array([np.flatnonzero(ids == k)[0] for k in range(len(m))])
            key = ch0[first] * n_v + ch1[first]
            assert np.all(np.diff(key) > 0)
            np.testing.assert_array_equal(m.n_cells, np.bincount(ids))


def test_adjacent_channels_on_different_modules_never_merge():
    # last column of module 0 next to first column of module 1 (adjacent keys), same channels on
    # module 2: in channel space they touch, physically they are different sensors
    n_u0 = GRID[0, 0]
    cells = make_cells([0, 1, 0, 1, 2], [n_u0 - 1, 0, 0, 0, 0], [0, 0, 3, 3, 3])
    ids, m = cluster(cells)
    assert len(m) == 5
    assert len(np.unique(ids)) == 5
    # ordered by module key, then first cell
    np.testing.assert_array_equal(m.module_key, KEYS[[0, 0, 1, 1, 2]])
    np.testing.assert_array_equal(ids, [1, 2, 0, 3, 4])


def test_result_is_invariant_to_cell_order():
    rng = np.random.default_rng(7)
    parts = []
    for module, (n_u, n_v) in enumerate(GRID):
        grid = rng.random((n_u, n_v)) < 0.2
        ch0, ch1 = np.nonzero(grid)
        parts.append((np.full(len(ch0), module), ch0, ch1))
    module, ch0, ch1 = (np.concatenate(x) for x in zip(*parts, strict=True))
    value = rng.uniform(0.1, 1, len(ch0))
    ids, m = cluster(make_cells(module, ch0, ch1, value))
    for _ in range(3):
        perm = rng.permutation(len(ch0))
        ids_p, m_p = cluster(make_cells(module[perm], ch0[perm], ch1[perm], value[perm]))
        # measurement order is defined by the cells, not their order: equal up to rounding
        np.testing.assert_array_equal(ids_p, ids[perm])
        for name in ("module_key", "size_u", "size_v", "n_cells"):
            np.testing.assert_array_equal(m_p[name], m[name])
        for name in ("local_u", "local_v", "var_u", "var_v", "charge"):
            np.testing.assert_allclose(m_p[name], m[name], rtol=1e-6, atol=1e-12)


def test_duplicate_cells_share_one_cluster():
    """A cell listed twice (e.g. two hits on one pixel) is one cell hit twice: same cluster,
    both values count towards the charge and the weight."""
    cells = make_cells([0, 0, 0, 0], [5, 5, 6, 20], [5, 5, 5, 20], value=[1.0, 3.0, 1.0, 1.0])
    ids, m = cluster(cells, 4)
    np.testing.assert_array_equal(ids, [0, 0, 0, 1])
    assert m.n_cells[0] == 3
    assert m.charge[0] == pytest.approx(5.0)
    assert (m.size_u[0], m.size_v[0]) == (2, 1)
    np.testing.assert_allclose(m.local_u[0], -1.0 + (5.2 + 0.5) * 0.05)  # mean ch0 26/5
    # a lone duplicated cell is one cluster too
    ids, m = cluster(make_cells([1, 1], [3, 3], [2, 2]))
    np.testing.assert_array_equal(ids, [0, 0])
    assert len(m) == 1


def test_zero_and_negative_values_still_count():
    # all-zero cluster: equal weights; a negative value weighs nothing but belongs
    cells = make_cells([0, 0, 0, 0], [1, 2, 10, 11], [1, 1, 1, 1], value=[0.0, 0.0, 1.0, -1.0])
    ids, m = cluster(cells)
    np.testing.assert_array_equal(ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(m.n_cells, [2, 2])
    np.testing.assert_allclose(m.local_u, [-1.0 + 2.0 * 0.05, -1.0 + 10.5 * 0.05])
    np.testing.assert_allclose(m.charge, [0.0, 0.0])
    assert np.all(np.isfinite(m.var_u))
    np.testing.assert_allclose(m.var_u[1], 0.05**2 / 12)  # only one cell has weight


def test_empty_input_gives_empty_typed_outputs():
    out = CpuClustering(toy_detector()).run(Cells.empty().to_tensors())
    assert len(out["clusters.cluster_id"]) == 0
    m = Measurements.from_tensors(out)
    assert len(m) == 0
    assert m.module_key.dtype == np.uint64


def test_unknown_module_and_out_of_grid_channel_are_input_errors():
    stage = CpuClustering(toy_detector())
    cells = make_cells([0, 0], [1, 2], [1, 1]).columns()
    cells["module_key"] = np.array([5, 99], np.uint64)
    with pytest.raises(InputError, match=r"99.*row 1|row 1.*99") as err:
        stage.run(Cells(cells).to_tensors())
    assert err.value.row == 1
    with pytest.raises(InputError, match="outside the readout grid"):
        stage.run(make_cells([0, 1], [1, 1], [1, GRID[1, 1]]).to_tensors())


def test_detector_too_fine_for_cell_keys_is_refused():
    det = toy_detector()
    cols = det.modules.columns()
    cols["n_u"] = np.array([1, 2, 1 << 21])
    with pytest.raises(TaasError, match="cell keys"):
        CpuClustering(Detector(Modules(cols)))


def test_stage_identity():
    stage = CpuClustering(toy_detector())
    assert stage.qualified_name == "clustering_cpu"
    assert stage.device == "cpu"
    assert {s.name for s in stage.INPUTS} == set(Cells.empty().to_tensors())


# --- real TrackML: each hit's cells are its truth cluster ------------------------------------
@pytest.fixture(scope="module")
def trackml_event():
    from taas.detector.trackml import load_trackml_detector
    from taas.events.trackml import read_trackml_event

    detector = load_trackml_detector(TRACKML_DIR / "detectors.csv.gz")
    return read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID, detector)


def exact_matches(cluster_id: np.ndarray, truth_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per measurement: does its cell set equal one truth cluster's; and that truth id."""
    n = int(cluster_id.max()) + 1 if len(cluster_id) else 0
    pairs = np.unique(np.stack([cluster_id, truth_id], axis=1), axis=0)
    truths_per_cluster = np.bincount(pairs[:, 0], minlength=n)
    clusters_per_truth = dict(zip(*np.unique(pairs[:, 1], return_counts=True), strict=True))
    truth_of = np.full(n, -1, np.int64)
    truth_of[pairs[:, 0]] = pairs[:, 1]
    exact = (truths_per_cluster == 1) & np.array([clusters_per_truth[t] == 1 for t in truth_of])
    return exact, truth_of


@needs_trackml
def test_trackml_clusters_are_the_truth_hits(trackml_event):
    ev = trackml_event
    stage = CpuClustering(ev.detector)
    out = stage.run(ev.cells.to_tensors())
    exact, _ = exact_matches(out["clusters.cluster_id"], ev.cells.hit_id)
    # 5527 hits -> 5525 measurements: TrackML has 2 pairs of touching hits that CCL merges
    assert exact.mean() >= 0.999
    assert len(exact) == 5525


@needs_trackml
def test_trackml_centroids_reproduce_hits_csv(trackml_event):
    """hits.csv holds the charge-weighted centroid; barrel volumes add a constant u shift."""
    ev = trackml_event
    det = ev.detector
    h = ev.hits
    order = np.argsort(h.hit_id)
    residuals = {}
    for weighted in (True, False):
        out = CpuClustering(det, ClusteringConfig(charge_weighted=weighted)).run(
            ev.cells.to_tensors())
        exact, truth_of = exact_matches(out["clusters.cluster_id"], ev.cells.hit_id)
        pos = order[np.searchsorted(h.hit_id[order], truth_of[exact])]
        du = out["measurements.local_u"][exact] - h.ref_u[pos]
        dv = out["measurements.local_v"][exact] - h.ref_v[pos]
        volume = det.modules["volume_id"][det.index_of(h.module_key[pos])]
        residuals[weighted] = du, dv, volume
    du, dv, volume = residuals[True]
    _, pv, _ = residuals[False]
    for vol in np.unique(volume):
        s = volume == vol
        shift = np.median(du[s])
        # barrel volumes 8, 13, 17 carry a Lorentz-like u shift of 18-30 um; the rest none
        assert abs(shift) > 0.015 if vol in (8, 13, 17) else abs(shift) < 1e-4
        assert np.percentile(np.abs(du[s] - shift), 99) < 2e-3
        assert np.percentile(np.abs(dv[s]), 99) < 2e-3
    # in the pixel volumes only the weighted centroid reproduces hits.csv
    pixel = np.isin(volume, (7, 8, 9))
    assert np.median(np.hypot(du - np.median(du), dv)[pixel & (volume != 8)]) < 1e-3
    assert np.percentile(np.abs(pv[pixel]), 99) > 10 * np.percentile(np.abs(dv[pixel]), 99)


# --- ACTS simulation: our clusters are ACTS' measurements ------------------------------------
@pytest.fixture
def acts_event(request):
    pytest.importorskip("taas.events.simulation",
                        reason="ACTS simulation (taas.events.simulation) not available yet")
    try:
        sim_dir = request.getfixturevalue("tiny_sim_dir")
    except pytest.FixtureLookupError:
        pytest.skip("no tiny_sim_dir fixture (tests/conftest.py) to simulate an ACTS event")
    from taas.events.dataset import open_dataset

    dataset = open_dataset(sim_dir)
    return dataset.read(dataset.event_ids[0])


def test_acts_measurements_are_reproduced(acts_event):
    ev = acts_event
    det = ev.detector
    out = CpuClustering(det).run(ev.cells.to_tensors())
    exact, truth_of = exact_matches(out["clusters.cluster_id"], ev.cells.hit_id)
    assert exact.mean() >= 0.999, f"{(~exact).sum()} of {len(exact)} clusters differ from ACTS'"
    h = ev.hits
    order = np.argsort(h.hit_id)
    pos = order[np.searchsorted(h.hit_id[order], truth_of[exact])]
    rows = det.index_of(h.module_key[pos])
    m = det.modules
    du = (out["measurements.local_u"][exact] - h.ref_u[pos]) / m["pitch_u"][rows]
    dv = (out["measurements.local_v"][exact] - h.ref_v[pos]) / m["pitch_v"][rows]
    assert np.percentile(np.abs(du), 99) < 0.01
    assert np.percentile(np.abs(dv), 99) < 0.01
