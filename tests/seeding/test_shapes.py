"""Cluster-shape cut of seed doublets: the geometry, the kernel's decisions, real clusters."""

from __future__ import annotations

import numpy as np
import pytest
from seeding_synth import Particles, SynthEvent, make_event, pure_seed_particle

from backends.cpu.seeding import CpuSeeding
from taas.errors import InputError
from taas.seeding import SeedingConfig, find_seeds
from taas.seeding.shapes import (
    SHAPE_COLUMNS,
    cluster_shapes,
    predicted_cells,
    spacepoint_shapes,
)

THICKNESS_OVER_PITCH = 3.0  # 150 um sensor, 50 um pixels


# --- geometry --------------------------------------------------------------------------------
@pytest.mark.parametrize("volume", ["barrel", "endcap"])
def test_predicted_cells_on_generic_modules(generic_detector, volume) -> None:
    """A track along the module normal fires one cell's worth of neither axis; tilting it by
    a along v (or u) fires a * thickness / pitch cells along that axis only."""
    det = generic_detector
    m = det.modules
    rot = det.rotation
    w = rot[:, :, 2]
    pixel = np.asarray(m["pitch_v"]) < 0.1
    barrel = np.abs(w[:, 2]) < 0.1
    row = int(np.flatnonzero(pixel & (barrel if volume == "barrel" else ~barrel))[0])
    key = np.array([m["module_key"][row]] * 3)
    shapes = cluster_shapes(det, key, np.ones(3), np.ones(3), np.zeros(3), np.zeros(3))
    u, v = rot[row, :, 0], rot[row, :, 1]
    t = float(m["thickness"][row])
    cells_u, cells_v = predicted_cells(shapes, np.stack([w[row], w[row] + 2.0 * v,
                                                         -(w[row] + 0.5 * u)]))
    np.testing.assert_allclose(cells_u, [0.0, 0.0, 0.5 * t / m["pitch_u"][row]], atol=1e-9)
    np.testing.assert_allclose(cells_v, [0.0, 2.0 * t / m["pitch_v"][row], 0.0], atol=1e-9)


def test_cluster_shapes_bad_input(generic_detector) -> None:
    key = np.array([generic_detector.modules["module_key"][0]])
    one, none = np.ones(1), np.zeros(0)
    with pytest.raises(InputError, match="is not a module of detector"):
        cluster_shapes(generic_detector, np.array([12345678901]), one, one, one, one)
    with pytest.raises(InputError, match="size_u"):
        cluster_shapes(generic_detector, key, np.ones(2), one, one, one)
    with pytest.raises(InputError, match="local_v"):
        cluster_shapes(generic_detector, key, one, one, one, np.ones(2))
    assert cluster_shapes(generic_detector, key[:0], none, none, none, none).shape == (
        0, len(SHAPE_COLUMNS))


def test_clusters_reaching_a_module_edge_are_flagged(generic_detector) -> None:
    """open_u / open_v mark clusters whose cells reach the module's edge along u / v (the
    trapezoid's width at the cluster's v for u), from centroid and size."""
    m = generic_detector.modules
    rot = generic_detector.rotation
    pixel = np.asarray(m["pitch_v"]) < 0.1
    row = int(np.flatnonzero(pixel & (np.abs(rot[:, 2, 2]) < 0.1))[0])  # a barrel pixel
    hv, hu, pv, pu = (float(m[c][row]) for c in ("hv", "max_hu", "pitch_v", "pitch_u"))
    key = np.array([m["module_key"][row]] * 4)
    size_u = np.array([1.0, 1.0, 7.0, 1.0])
    size_v = np.array([7.0, 7.0, 1.0, 7.0])
    # centre; last cell of a 7-cell cluster on the +v edge; 7-cell cluster on the -u edge;
    # 7-cell cluster ending 10 cells before the -v edge
    local_u = np.array([0.0, 0.0, -(hu - 3.5 * pu), 0.0])
    local_v = np.array([0.0, hv - 3.5 * pv, 0.0, -(hv - 13.5 * pv)])
    table = cluster_shapes(generic_detector, key, size_u, size_v, local_u, local_v)
    open_u = table[:, SHAPE_COLUMNS.index("open_u")]
    open_v = table[:, SHAPE_COLUMNS.index("open_v")]
    np.testing.assert_array_equal(open_u, [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(open_v, [0.0, 1.0, 0.0, 0.0])


def test_edge_clusters_may_be_shorter_but_not_longer() -> None:
    """Along an axis where the cluster reaches the module's edge, the deficit side is open (a
    steep track may leave through the side) and bounds no z window; the excess side holds."""
    from taas.seeding.kernels import _shape_fits, _shape_slope_bound

    table = np.zeros((1, len(SHAPE_COLUMNS)))
    table[0, 0:3] = [1.0, 0.0, 0.0]  # barrel-like: w radial, u along y, v along z
    table[0, 3:6] = [0.0, THICKNESS_OVER_PITCH, 0.0]
    table[0, 6:9] = [0.0, 0.0, THICKNESS_OVER_PITCH]
    table[0, 9:11] = [1.0, 7.0]
    tol = (4.0, 1.5)
    steep = (1.0, 0.0, 13.0 / THICKNESS_OVER_PITCH)  # fires 13 cells along v
    assert not _shape_fits(table, 0, *steep, tol)
    assert np.isfinite(_shape_slope_bound(table, 0, tol[1]))
    table[0, 12] = 1.0  # open_v
    assert _shape_fits(table, 0, *steep, tol)
    assert _shape_slope_bound(table, 0, tol[1]) == np.inf
    flat = (1.0, 0.0, 1.0 / THICKNESS_OVER_PITCH)  # fires 1 cell: 7 is 6 too many
    assert not _shape_fits(table, 0, *flat, tol)


# --- kernel decisions on analytic helices ------------------------------------------------------
def _frames(event: SynthEvent) -> np.ndarray:
    """Shape table with module frames of the toy geometry: barrel w radial, u along phi, v
    along z; disk w along z, u along phi, v radial. Sizes are those a straight track along the
    chord to the particle's next space point fires (at least one cell)."""
    sp = event.spacepoints
    x, y, z, r = sp["x"], sp["y"], sp["z"], sp["r"]
    radial = np.stack([x / r, y / r, np.zeros_like(r)], axis=1)
    along_phi = np.stack([-y / r, x / r, np.zeros_like(r)], axis=1)
    z_axis = np.tile([0.0, 0.0, 1.0], (len(r), 1))
    b = event.barrel[:, None]
    table = np.zeros((len(r), len(SHAPE_COLUMNS)))  # no cluster on a module edge
    table[:, 0:3] = np.where(b, radial, z_axis)
    table[:, 3:6] = along_phi * THICKNESS_OVER_PITCH
    table[:, 6:9] = np.where(b, z_axis, radial) * THICKNESS_OVER_PITCH
    # chord to the next space point of the same particle (to the previous one for the last)
    order = np.lexsort((r, event.particle))
    nxt = np.empty(len(r), np.int64)
    same = event.particle[order[1:]] == event.particle[order[:-1]]
    nxt[order[:-1]] = np.where(same, order[1:], order[:-1])
    nxt[order[-1]] = order[-1]
    last = nxt == np.arange(len(r))
    prev = np.empty(len(r), np.int64)
    prev[order[1:]] = order[:-1]
    nxt[last] = prev[last]
    xyz = np.stack([x, y, z], axis=1)
    table[:, 9:11] = 1.0
    cells_u, cells_v = predicted_cells(table, xyz[nxt] - xyz)
    table[:, 9] = np.maximum(1.0, np.ceil(cells_u))
    table[:, 10] = np.maximum(1.0, np.ceil(cells_v))
    return table


@pytest.fixture(scope="module")
def stiff_tracks() -> SynthEvent:
    rng = np.random.default_rng(21)
    n = 40
    particles = Particles(pt=np.full(n, 5000.0), eta=rng.uniform(-2.0, 2.0, n),
                          phi=rng.uniform(-np.pi, np.pi, n), q=rng.choice([-1.0, 1.0], n),
                          vz=rng.uniform(-100.0, 100.0, n))
    return make_event(particles, rng)


def test_true_clusters_keep_every_true_seed(stiff_tracks) -> None:
    shapes = _frames(stiff_tracks)
    plain = find_seeds(stiff_tracks.spacepoints, SeedingConfig(cluster_shape_cut=False))
    cut = find_seeds(stiff_tracks.spacepoints, shapes=shapes)
    true_plain = set(pure_seed_particle(stiff_tracks, plain["spacepoints"]).tolist()) - {-1}
    true_cut = set(pure_seed_particle(stiff_tracks, cut["spacepoints"]).tolist()) - {-1}
    assert len(true_plain) > 30
    assert true_cut == true_plain
    # switched off, the shapes change nothing
    off = find_seeds(stiff_tracks.spacepoints, SeedingConfig(cluster_shape_cut=False),
                     shapes=shapes)
    assert off.equals(plain)


def test_wrong_cluster_lengths_remove_the_seeds(stiff_tracks) -> None:
    shapes = _frames(stiff_tracks)
    too_long = shapes.copy()
    too_long[:, 10] += 8.0  # every cluster 8 cells longer along v than its track fires
    stats: dict[str, int] = {}
    assert len(find_seeds(stiff_tracks.spacepoints, stats=stats, shapes=too_long)) == 0
    assert stats["shape_rejected"] > 0
    assert stats["bottom_doublets"] == 0
    tolerant = SeedingConfig(shape_excess_cells=10.0)
    assert len(find_seeds(stiff_tracks.spacepoints, tolerant, shapes=too_long)) > 0
    too_short = shapes.copy()
    too_short[:, 10] = np.maximum(1.0, too_short[:, 10] - 3.0)
    steep = np.abs(stiff_tracks.particles.eta) > 1.2  # their clusters were >= 5 cells
    found = set(pure_seed_particle(stiff_tracks, find_seeds(
        stiff_tracks.spacepoints, shapes=too_short)["spacepoints"]).tolist())
    steep_barrel = {int(i) for i in np.flatnonzero(steep)
                    if stiff_tracks.barrel[stiff_tracks.particle == i].sum() >= 3}
    assert steep_barrel
    assert not steep_barrel & found


def test_clusters_without_size_are_not_cut(generic_detector, stiff_tracks) -> None:
    """A measurement without cells (size 0) gets a zero row: no direction is rejected for it,
    and it bounds no z window."""
    from taas.seeding.kernels import _shape_fits, _shape_slope_bound

    key = np.array([generic_detector.modules["module_key"][0]] * 2)
    table = cluster_shapes(generic_detector, key, np.array([0.0, 3.0]), np.array([2.0, 0.0]),
                           np.zeros(2), np.zeros(2))
    assert not table.any()
    for d in np.random.default_rng(2).normal(size=(50, 3)):
        assert _shape_fits(table, 0, *d, (4.0, 1.5))
    assert _shape_slope_bound(table, 1, 1.5) == np.inf
    none = np.zeros((len(stiff_tracks.spacepoints), len(SHAPE_COLUMNS)))
    plain = find_seeds(stiff_tracks.spacepoints, SeedingConfig(cluster_shape_cut=False))
    assert find_seeds(stiff_tracks.spacepoints, shapes=none).equals(plain)


def test_bad_shape_table_raises(stiff_tracks) -> None:
    shapes = _frames(stiff_tracks)
    with pytest.raises(InputError, match="one row per space point"):
        find_seeds(stiff_tracks.spacepoints, shapes=shapes[:-1])
    shapes[3, 4] = np.nan
    with pytest.raises(InputError, match="not all finite"):
        find_seeds(stiff_tracks.spacepoints, shapes=shapes)


# --- real clusters ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_front_end(tiny_sim_dir):
    from taas.events.dataset import open_dataset
    from taas.gnn.data import front_end

    dataset = open_dataset(tiny_sim_dir)
    event = dataset.read(dataset.event_ids[0])
    return event, front_end(event)


def test_stage_cuts_random_doublets_of_simulated_clusters(tiny_front_end) -> None:
    """On an ACTS-simulated event the cut removes doublets and keeps the seeded particles."""
    from taas.edm import Measurements, Spacepoints
    from taas.edm.hits import Clusters
    from taas.metrics.truth_link import measurement_particles

    event, tensors = tiny_front_end
    stage = CpuSeeding(event.detector)
    seeds = stage.run(tensors)
    meas = Measurements.from_tensors(tensors)
    sp = Spacepoints.from_tensors(tensors)
    rows = sp.measurement_index
    shapes = spacepoint_shapes(event.detector, meas, sp)
    with_cut: dict[str, int] = {}
    without: dict[str, int] = {}
    assert find_seeds(sp, stats=with_cut, shapes=shapes).equals(
        find_seeds(sp, shapes=shapes))
    np.testing.assert_array_equal(seeds["seeds.spacepoints"],
                                  find_seeds(sp, shapes=shapes)["spacepoints"])
    plain = find_seeds(sp, SeedingConfig(cluster_shape_cut=False), stats=without)
    assert with_cut["shape_rejected"] > 0
    assert with_cut["bottom_doublets"] < without["bottom_doublets"]
    clusters = Clusters.from_tensors(tensors)
    particle = measurement_particles(event.cells.hit_id, clusters.cluster_id, len(meas),
                                     event.hits)[rows]

    def seeded(s: np.ndarray) -> set[int]:
        p = particle[s]
        pure = (p[:, 0] == p[:, 1]) & (p[:, 1] == p[:, 2]) & (p[:, 0] != 0)
        return set(p[pure, 0].tolist())

    found_plain = seeded(plain["spacepoints"])
    found_cut = seeded(seeds["seeds.spacepoints"])
    assert len(found_plain) > 20
    assert len(found_plain - found_cut) <= 1


def test_slope_bound_holds_for_every_direction_the_shape_admits() -> None:
    """The middle's z-window narrowing is exact: any direction passing the shape check has
    |dz| / d_T within ``_shape_slope_bound``, for random module orientations (barrel-like,
    disk-like and tilted), cluster sizes and directions."""
    from scipy.spatial.transform import Rotation

    from taas.seeding.kernels import _shape_fits, _shape_slope_bound

    rng = np.random.default_rng(5)
    n = 400
    rot = Rotation.random(n, random_state=6).as_matrix()
    rot[:100] = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # barrel: u=y, v=z, w=x
    table = np.zeros((n, len(SHAPE_COLUMNS)))
    table[:, 0:3] = rot[:, :, 2]
    table[:, 3:6] = rot[:, :, 0] * THICKNESS_OVER_PITCH
    table[:, 6:9] = rot[:, :, 1] * THICKNESS_OVER_PITCH
    table[:, 9:11] = rng.integers(1, 12, (n, 2))
    table[200:, 11:13] = rng.random((n - 200, 2)) < 0.3  # some clusters on a module edge
    tol = (4.0, 1.5)
    bounded = passed = 0
    for i in range(n):
        bound = _shape_slope_bound(table, i, tol[1])
        bounded += bool(np.isfinite(bound))
        d = rng.normal(size=(300, 3)) * [1.0, 1.0, rng.uniform(0.1, 5.0)]
        for dx, dy, dz in d:
            if _shape_fits(table, i, dx, dy, dz, tol):
                passed += bool(np.isfinite(bound))
                assert abs(dz) <= bound * np.hypot(dx, dy) * (1 + 1e-12)
    assert bounded >= 100  # every barrel-like module gets a bound
    assert passed > 1000  # and the check above ran on many admitted directions
