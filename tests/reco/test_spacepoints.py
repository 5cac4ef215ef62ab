"""CPU space points: global positions of measurements and their cluster-shape features."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cpu.clustering import CpuClustering
from backends.cpu.spacepoints import CpuSpacepoints
from taas.detector import Detector, Modules
from taas.detector.modules import ROTATION_COLUMNS
from taas.edm import Measurements, Spacepoints
from taas.errors import InputError
from taas.reco.cluster_features import SpacepointFeatures, eta_phi
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml

PITCH_U, PITCH_V, THICKNESS = 0.05, 0.4, 0.25


def rotated_detector(n: int = 6, seed: int = 0) -> Detector:
    """``n`` modules at random places and orientations; module 0 is unrotated at the origin."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    rot = q * np.sign(np.linalg.det(q))[:, None, None]
    rot[0] = np.eye(3)
    centre = rng.normal(0, 300, (n, 3))
    centre[0] = 0
    n_u, n_v = np.full(n, 400), np.full(n, 50)
    hu, hv = n_u * PITCH_U / 2, n_v * PITCH_V / 2
    return Detector(Modules(
        module_key=np.arange(n, dtype=np.uint64) + 100, volume_id=np.full(n, 8),
        layer_id=np.full(n, 2), module_id=np.arange(n),
        cx=centre[:, 0], cy=centre[:, 1], cz=centre[:, 2],
        **{c: rot.reshape(n, 9)[:, i] for i, c in enumerate(ROTATION_COLUMNS)},
        thickness=np.full(n, THICKNESS), min_hu=hu, max_hu=hu, hv=hv,
        pitch_u=np.full(n, PITCH_U), pitch_v=np.full(n, PITCH_V), n_u=n_u, n_v=n_v,
    ), name="rotated")


def make_measurements(det: Detector, rows: np.ndarray, rng: np.random.Generator) -> Measurements:
    n = len(rows)
    return Measurements(
        module_key=det.modules["module_key"][rows], local_u=rng.uniform(-9, 9, n),
        local_v=rng.uniform(-9, 9, n), var_u=np.full(n, 2e-4), var_v=np.full(n, 1e-2),
        size_u=rng.integers(1, 5, n), size_v=rng.integers(1, 3, n),
        n_cells=rng.integers(1, 8, n), charge=rng.uniform(0.1, 3, n))


def run(det: Detector, meas: Measurements) -> tuple[Spacepoints, SpacepointFeatures]:
    out = CpuSpacepoints(det).run(meas.to_tensors())
    return Spacepoints.from_tensors(out), SpacepointFeatures.from_tensors(out)


def test_positions_are_the_local_points_on_their_modules():
    det = rotated_detector()
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(det), 200)
    meas = make_measurements(det, rows, rng)
    sp, _ = run(det, meas)
    np.testing.assert_array_equal(sp.measurement_index, np.arange(200))
    xyz = np.stack([sp.x, sp.y, sp.z], axis=1)
    local = det.global_to_local(rows, xyz)
    np.testing.assert_allclose(local[:, 0], meas.local_u, atol=1e-9)
    np.testing.assert_allclose(local[:, 1], meas.local_v, atol=1e-9)
    np.testing.assert_allclose(local[:, 2], 0, atol=1e-9)
    np.testing.assert_allclose(sp.r, np.hypot(sp.x, sp.y))
    np.testing.assert_allclose(sp.phi, np.arctan2(sp.y, sp.x))
    theta = np.arctan2(sp.r, sp.z)
    np.testing.assert_allclose(sp.eta, -np.log(np.tan(theta / 2)), atol=1e-9)


def test_shape_features_on_an_unrotated_module_by_hand():
    det = rotated_detector()
    meas = Measurements(module_key=det.modules["module_key"][[0]], local_u=[0.0], local_v=[0.0],
                        var_u=[1.0], var_v=[1.0], size_u=[3], size_v=[2], n_cells=[4],
                        charge=[2.5])
    _, f = run(det, meas)
    lu, lv = 3 * PITCH_U, 2 * PITCH_V
    assert (f.n_cells[0], f.size_u[0], f.size_v[0]) == (4, 3, 2)
    assert f.charge[0] == pytest.approx(2.5)
    np.testing.assert_allclose([f.extent_u[0], f.extent_v[0]], [lu, lv])
    np.testing.assert_allclose(f.local_angle, [np.arctan2(lv, lu)])
    np.testing.assert_allclose([f.gx[0], f.gy[0], f.gz[0]], [lu, lv, THICKNESS])
    np.testing.assert_allclose(f.local_phi, [np.arctan2(lv, lu)])
    np.testing.assert_allclose(f.local_eta, [np.arcsinh(THICKNESS / np.hypot(lu, lv))])
    # unrotated: global and local angles agree
    np.testing.assert_allclose(f.global_eta, f.local_eta)
    np.testing.assert_allclose(f.global_phi, f.local_phi)


def test_global_shape_vector_is_the_rotated_local_one():
    det = rotated_detector()
    rng = np.random.default_rng(2)
    rows = rng.integers(0, len(det), 100)
    _, f = run(det, make_measurements(det, rows, rng))
    g = np.stack([f.gx, f.gy, f.gz], axis=1)
    local = np.stack([f.extent_u, f.extent_v, np.full(len(rows), THICKNESS)], axis=1)
    np.testing.assert_allclose(np.einsum("nji,nj->ni", det.rotation[rows], g), local, atol=1e-12)
    eta, phi = eta_phi(g[:, 0], g[:, 1], g[:, 2])
    np.testing.assert_allclose(f.global_eta, eta)
    np.testing.assert_allclose(f.global_phi, phi)
    assert np.all((f.local_angle > 0) & (f.local_angle < np.pi / 2))


def test_eta_phi_along_the_axis_is_infinite_not_nan():
    eta, phi = eta_phi(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0]),
                       np.array([2.0, -1.0, 0.0]))
    np.testing.assert_array_equal(eta, [np.inf, -np.inf, 0.0])
    assert np.all(np.isfinite(phi))


def test_empty_input_gives_empty_typed_outputs():
    out = CpuSpacepoints(rotated_detector()).run(Measurements.empty().to_tensors())
    assert len(Spacepoints.from_tensors(out)) == 0
    f = SpacepointFeatures.from_tensors(out)
    assert len(f) == 0
    assert f.n_cells.dtype == np.int32


def test_unknown_module_is_an_input_error():
    det = rotated_detector()
    meas = make_measurements(det, np.array([0, 1]), np.random.default_rng(0)).columns()
    meas["module_key"] = np.array([100, 7], np.uint64)
    with pytest.raises(InputError, match="module key 7") as err:
        CpuSpacepoints(det).run(Measurements(meas).to_tensors())
    assert err.value.row == 1


def test_stage_identity():
    stage = CpuSpacepoints(rotated_detector())
    assert stage.qualified_name == "spacepoints_cpu"
    names = {s.name for s in stage.OUTPUTS}
    assert "spacepoints.x" in names
    assert "spacepoint_features.global_eta" in names


@needs_trackml
def test_trackml_spacepoints_reproduce_hits_csv():
    """Cells -> clusters -> space points lands on hits.csv, bar the barrel's Lorentz-like shift."""
    from taas.detector.trackml import load_trackml_detector
    from taas.events.trackml import read_trackml_event

    det = load_trackml_detector(TRACKML_DIR / "detectors.csv.gz")
    ev = read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID, det)
    clusters = CpuClustering(det).run(ev.cells.to_tensors())
    out = CpuSpacepoints(det).run(clusters)
    sp = Spacepoints.from_tensors(out)
    # the hit of each measurement: the hit of one of its cells (merged clusters are 2 of 5525)
    cid = clusters["clusters.cluster_id"]
    hit_of = np.zeros(len(sp), np.int64)
    hit_of[cid] = ev.cells.hit_id
    h = ev.hits
    order = np.argsort(h.hit_id)
    pos = order[np.searchsorted(h.hit_id[order], hit_of)]
    rows = det.index_of(h.module_key[pos])
    ref = det.local_to_global(rows, h.ref_u[pos], h.ref_v[pos])
    dist = np.linalg.norm(np.stack([sp.x, sp.y, sp.z], axis=1) - ref, axis=1)
    volume = det.modules["volume_id"][rows]
    barrel = np.isin(volume, (8, 13, 17))
    assert np.median(dist[~barrel]) < 1e-3  # mm
    assert np.percentile(dist[~barrel], 99) < 5e-3
    assert np.percentile(dist[barrel], 99) < 0.035  # the 18-30 um u shift of TrackML's barrel
    f = SpacepointFeatures.from_tensors(out)
    np.testing.assert_array_equal(f.n_cells, clusters["measurements.n_cells"])
    assert np.all(np.isfinite(f.global_eta))
    assert np.all(np.isfinite(f.gx))
