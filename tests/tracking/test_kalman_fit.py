"""The Kalman fit on simulated helices: pulls, chi2, resolution, and the filter's algebra."""

from __future__ import annotations

import numpy as np
import pytest

from taas.tracking.estimation import estimate_parameters, loose_covariance
from taas.tracking.fitter import TrackFitConfig, fit_prototracks, tracks_to_perigee
from taas.tracking.kalman import (
    Surfaces,
    _rts_smoother,
    kalman_fit,
    kalman_update,
    predicted_chi2,
    running_tracks,
)
from taas.tracking.parameters import PHI, QOP, free_to_perigee, wrap_phi
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate

N_TRACKS = 1000


@pytest.fixture(scope="module")
def detector():
    return barrel_detector()


def simulated(detector, seed: int, scattering: bool, n: int = N_TRACKS):
    rng = np.random.default_rng(seed)
    truth = simulate(detector, generate_particles(n, rng), rng, scattering=scattering)
    return truth, rng


@pytest.fixture(scope="module")
def scattered(detector):
    truth, rng = simulated(detector, 11, scattering=True)
    meas, protos = measure(detector, truth, rng)
    tracks, keep = fit_prototracks(detector, meas, protos)
    return truth, tracks, keep


def pulls(tracks, truth_params) -> np.ndarray:
    diff = tracks["params"] - truth_params
    diff[:, PHI] = wrap_phi(diff[:, PHI])
    sigma = np.sqrt(np.diagonal(tracks["covariance"], axis1=1, axis2=2))
    return (diff / sigma)[:, :5]


def assert_unit_pulls(p: np.ndarray) -> None:
    mean, width = p.mean(axis=0), p.std(axis=0)
    assert np.all(np.abs(mean) < 0.1), f"pull means {mean}"
    assert np.all((width > 0.85) & (width < 1.15)), f"pull widths {width}"


def test_truth_hits_lie_on_modules(detector, scattered):
    truth, _, _ = scattered
    assert np.abs(truth.w).max() < 1e-9
    # every particle crossed each of the ten layers once, on distinct modules
    layers = detector.modules["layer_id"][truth.rows]
    np.testing.assert_array_equal(layers, np.broadcast_to(np.arange(1, 11), layers.shape))


def test_pulls_and_chi2_with_multiple_scattering(scattered):
    truth, tracks, keep = scattered
    assert len(tracks) == N_TRACKS
    np.testing.assert_array_equal(keep, np.arange(N_TRACKS))
    assert_unit_pulls(pulls(tracks, truth.params[:, 0]))
    np.testing.assert_array_equal(tracks["ndf"], 15)
    assert 0.93 < np.mean(tracks["chi2"] / tracks["ndf"]) < 1.07


def test_pulls_at_the_perigee(detector, scattered):
    """No material between the origin and the first layer: the production point is the truth."""
    truth, tracks, _ = scattered
    perigee, cov = tracks_to_perigee(tracks, detector, bz=2.0)
    true_perigee = free_to_perigee(truth.free0, 2.0)
    np.testing.assert_allclose(true_perigee[:, :2], 0, atol=1e-9)
    diff = perigee - true_perigee
    diff[:, PHI] = wrap_phi(diff[:, PHI])
    assert_unit_pulls((diff / np.sqrt(np.diagonal(cov, axis1=1, axis2=2)))[:, :5])


def test_pulls_without_scattering(detector):
    truth, rng = simulated(detector, 12, scattering=False)
    meas, protos = measure(detector, truth, rng)
    tracks, _ = fit_prototracks(detector, meas, protos,
                                TrackFitConfig(multiple_scattering=False))
    assert_unit_pulls(pulls(tracks, truth.params[:, 0]))
    assert 0.93 < np.mean(tracks["chi2"] / tracks["ndf"]) < 1.07


def test_ignoring_scattering_is_detected(detector):
    """The material model matters in this toy: leaving it out inflates chi2 and the pulls."""
    truth, rng = simulated(detector, 13, scattering=True, n=300)
    meas, protos = measure(detector, truth, rng)
    tracks, _ = fit_prototracks(detector, meas, protos, TrackFitConfig(multiple_scattering=False))
    assert np.mean(tracks["chi2"] / tracks["ndf"]) > 1.5
    assert pulls(tracks, truth.params[:, 0])[:, QOP].std() > 1.3


def test_momentum_resolution_improves_with_layers(detector, scattered):
    truth, tracks_all, _ = scattered
    widths = []
    for n_layers in (4, 7):
        rng = np.random.default_rng(n_layers)
        meas, protos = measure(detector, truth, rng, n_layers=n_layers)
        tracks, _ = fit_prototracks(detector, meas, protos)
        np.testing.assert_array_equal(tracks["ndf"], 2 * n_layers - 5)
        widths.append(np.std(tracks["params"][:, QOP] / truth.params[:, 0, QOP] - 1))
    widths.append(np.std(tracks_all["params"][:, QOP] / truth.params[:, 0, QOP] - 1))
    assert widths[0] > 1.5 * widths[1] > 1.5 * 1.2 * widths[2], widths


@pytest.mark.parametrize("n_points", [3, 10])
def test_estimation_is_exact_on_a_true_helix(detector, n_points):
    truth, _ = simulated(detector, 14, scattering=False, n=200)
    rows = truth.rows[:, :n_points]
    xyz = detector.local_to_global(rows.reshape(-1), truth.params[:, :n_points, 0].reshape(-1),
                                   truth.params[:, :n_points, 1].reshape(-1)).reshape(-1,
                                                                                      n_points, 3)
    params, cov = estimate_parameters(xyz, detector.center[rows[:, 0]],
                                      detector.rotation[rows[:, 0]], 2.0)
    want = truth.params[:, 0]
    np.testing.assert_allclose(params[:, :2], want[:, :2], atol=1e-9)
    np.testing.assert_allclose(wrap_phi(params[:, PHI] - want[:, PHI]), 0, atol=1e-9)
    np.testing.assert_allclose(params[:, 2:5], want[:, 2:5], rtol=1e-7, atol=1e-9)
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_update_matches_information_form_and_chi2():
    """Gain-form update == information-form; predicted chi2 == filtered-residual chi2."""
    rng = np.random.default_rng(5)
    n = 50
    a = rng.normal(size=(n, 6, 6))
    cov = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(6)
    params = rng.normal(size=(n, 6))
    meas = params[:, :2] + rng.normal(size=(n, 2))
    var = rng.uniform(0.1, 2, (n, 2))
    new, new_cov, chi2 = kalman_update(params, cov, meas, var)
    h = np.zeros((2, 6))
    h[0, 0] = h[1, 1] = 1
    for i in range(n):
        v_inv = np.diag(1 / var[i])
        info = np.linalg.inv(cov[i]) + h.T @ v_inv @ h
        want_cov = np.linalg.inv(info)
        want = want_cov @ (np.linalg.solve(cov[i], params[i]) + h.T @ v_inv @ meas[i])
        want[PHI] = wrap_phi(want[PHI])
        np.testing.assert_allclose(new[i], want, atol=1e-9)
        np.testing.assert_allclose(new_cov[i], want_cov, atol=1e-9)
        r = meas[i] - new[i, :2]
        r_cov = np.diag(var[i]) - new_cov[i, :2, :2]
        assert chi2[i] == pytest.approx(r @ np.linalg.solve(r_cov, r), rel=1e-8)
    np.testing.assert_allclose(predicted_chi2(params, cov, meas, var), chi2, rtol=1e-12)



def _random_spd(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    a = rng.normal(size=(*shape, 6, 6))
    return a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(6)


def test_smoother_matches_the_rts_formulas():
    """The smoother's row loop against the RTS equations written out with numpy
    (A = C_f F^T P^-1, x = x_f + A (x_s - p), C = C_f + A (C_s - P) A^T, phi differences
    wrapped); a track with a non-finite predicted covariance is NaN from there inwards, the
    others are unaffected; a track shorter than the batch starts from its own last entry and
    keeps the filtered values beyond it."""
    rng = np.random.default_rng(9)
    n, m = 20, 5
    filt = rng.normal(size=(n, m, 6))
    filt[:, :, PHI] = rng.uniform(-np.pi, np.pi, (n, m))
    pred = filt + 0.1 * rng.normal(size=(n, m, 6))
    pred[:, 3, PHI] = filt[:, 3, PHI] + 2 * np.pi - 0.01  # a difference that must wrap
    filt_cov, pred_cov = _random_spd(rng, (n, m)), _random_spd(rng, (n, m))
    jac = np.eye(6) + 0.1 * rng.normal(size=(n, m, 6, 6))
    pred_cov[7, 2, 0, 0] = np.nan
    lengths = np.full(n, m)
    lengths[11] = 3
    smooth, smooth_cov = _rts_smoother(filt, filt_cov, pred, pred_cov, jac, lengths)
    assert np.all(np.isnan(smooth[7, :2]))
    assert np.all(np.isnan(smooth_cov[7, :2]))
    np.testing.assert_array_equal(smooth[11, 3:], filt[11, 3:])
    for i in range(n):
        last = lengths[i] - 1
        x, c = filt[i, last].copy(), filt_cov[i, last].copy()
        np.testing.assert_array_equal(smooth[i, last], x)
        for k in range(last - 1, 1 if i == 7 else -1, -1):
            gain = filt_cov[i, k] @ jac[i, k + 1].T @ np.linalg.inv(pred_cov[i, k + 1])
            diff = x - pred[i, k + 1]
            diff[PHI] = wrap_phi(diff[PHI])
            x = filt[i, k] + gain @ diff
            x[PHI] = wrap_phi(x[PHI])
            c = filt_cov[i, k] + gain @ (c - pred_cov[i, k + 1]) @ gain.T
            np.testing.assert_allclose(smooth[i, k], x, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(smooth_cov[i, k], c, rtol=1e-9, atol=1e-9)


def test_ragged_batch_equals_equal_length_batches(detector, scattered):
    """Tracks of 10, 7 and 4 measurements in one batch (longest first, padded) give bit for
    bit what three batches of equal-length tracks give; entries beyond a track's length are
    NaN."""
    truth, _, _ = scattered
    rng = np.random.default_rng(5)
    tracks = rng.choice(N_TRACKS, 30, replace=False)
    lengths = np.repeat([10, 7, 4], 10)
    rows = truth.rows[tracks]
    surfaces = Surfaces(detector.center[rows], detector.rotation[rows],
                        detector.modules["thickness"][rows])
    meas = truth.params[tracks, :, :2] + rng.normal(0, 0.01, (30, 10, 2))
    var = np.full_like(meas, 1e-4)
    start = truth.params[tracks, 0] * (1 + 0.01 * rng.normal(size=(30, 6)))
    prior = loose_covariance(start)
    ragged = kalman_fit(start, prior, surfaces, meas, var, bz=2.0, lengths=lengths)
    for length in (10, 7, 4):
        group = lengths == length
        alone = kalman_fit(start[group], prior[group],
                           Surfaces(*(a[group, :length] for a in surfaces)),
                           meas[group, :length], var[group, :length], bz=2.0)
        assert alone.ok.all()
        for got, want in zip(ragged, alone, strict=True):
            np.testing.assert_array_equal(got[group][:, :length] if got.ndim > 1 else got[group],
                                          want)
        assert np.isnan(ragged.params[group, length:]).all()


def test_ragged_lengths_are_checked():
    np.testing.assert_array_equal(running_tracks(np.array([3, 3, 2, 1]), 4, 3), [4, 3, 2])
    np.testing.assert_array_equal(running_tracks(None, 4, 2), [4, 4])
    for bad in ([1, 2, 3, 3], [4, 3, 2, 1], [3, 2, 1, 0], [3, 2]):
        with pytest.raises(ValueError, match="longest first"):
            running_tracks(np.array(bad), 4, 3)
