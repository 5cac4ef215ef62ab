"""Where and with which state the Kalman filter adds a module's material: ACTS' convention.

ACTS' ``KalmanFitter`` (``PointwiseMaterialInteraction``, surface material with the default
split factor 1) adds a measurement surface's whole slab *after* the update there: the Highland
width and the Bethe loss use the filtered q/p, the path through the slab the filtered direction
(thickness / |cos incidence|), and sigma(phi) = theta0 / sin(theta) of the filtered theta. The
agreement with ACTS' fits (``benchmarks/acts_fit_comparison.py``) rests on taas doing the same,
so these tests compute the expectation by hand (PDG RPP 2024 eq. 34.16 with beta and the log
term, pion mass) and check the filter's predicted state on the next module against it. The
prior correlates loc with q/p and theta, so the measurement moves both: a filter that took the
predicted state instead fails by far more than the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from taas.detector.material import SILICON
from taas.tracking import helix
from taas.tracking import kalman as kalman_module
from taas.tracking.kalman import Surfaces, kalman_fit
from taas.tracking.material import energy_loss, slab_noise
from taas.tracking.parameters import PHI, QOP, THETA, direction
from taas.tracking.propagation import propagate

BZ = 2.0
THICKNESS = 0.25  # mm of silicon, a Generic-detector pixel module
X0 = SILICON["x0"]


def _highland_by_hand(p: float, x_over_x0: float) -> float:
    """theta0 = 13.6 MeV / (beta p) sqrt(x/X0) (1 + 0.038 ln(x / (X0 beta^2))), pion."""
    m = helix.PION_MASS
    beta = p / math.sqrt(p * p + m * m)
    return 0.0136 / (beta * p) * math.sqrt(x_over_x0) * (
        1 + 0.038 * math.log(x_over_x0 / beta**2))


def _two_modules() -> tuple[Surfaces, np.ndarray, np.ndarray]:
    """Module 0 tilted by 30 degrees about z (an inclined crossing), module 1 60 mm out; a
    prior on module 0 whose loc0 correlates with q/p and loc1 with theta (corr 0.9)."""
    a = math.radians(30.0)
    rot0 = np.array([[-math.sin(a), 0.0, math.cos(a)],
                     [math.cos(a), 0.0, math.sin(a)],
                     [0.0, 1.0, 0.0]])  # columns u, v, w (normal)
    rot1 = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    center = np.array([[[30.0, 0.0, 0.0], [90.0, 0.0, 0.0]]])
    surfaces = Surfaces(center, np.stack([rot0, rot1])[None], np.full((1, 2), THICKNESS))
    params0 = np.array([[0.0, 0.0, 0.1, 1.2, 1.0 / 0.8, 0.0]])
    sigmas = np.array([1.0, 1.0, 0.05, 0.05, 0.5, 1.0])
    cov0 = np.diag(sigmas**2)
    cov0[0, QOP] = cov0[QOP, 0] = 0.9 * sigmas[0] * sigmas[QOP]
    cov0[1, THETA] = cov0[THETA, 1] = 0.9 * sigmas[1] * sigmas[THETA]
    return surfaces, params0, cov0[None]


def _filter_states(monkeypatch: pytest.MonkeyPatch, **kwargs: object,
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(predicted params, predicted cov, filtered params) at each module of the toy track."""
    surfaces, params0, cov0 = _two_modules()
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    update = kalman_module.kalman_update

    def spy(params: np.ndarray, cov: np.ndarray, meas: np.ndarray, var: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = update(params, cov, meas, var)
        seen.append((params.copy(), cov.copy(), out[0].copy()))
        return out

    monkeypatch.setattr(kalman_module, "kalman_update", spy)
    meas = np.array([[[0.5, 0.3], [0.0, 0.0]]])
    result = kalman_fit(params0, cov0, surfaces, meas, np.full((1, 2, 2), 1e-4), bz=BZ,
                        **kwargs)  # type: ignore[arg-type]
    assert result.ok[0]
    return seen


def _transport(filtered: np.ndarray) -> np.ndarray:
    surfaces, _, _ = _two_modules()
    prop = propagate(filtered, surfaces.center[:, 0], surfaces.rotation[:, 0],
                     surfaces.center[:, 1], surfaces.rotation[:, 1], bz=BZ)
    return np.asarray(prop.transport[0], dtype=float)


def _path_in_slab(state: np.ndarray) -> float:
    rotation = _two_modules()[0].rotation
    cos_inc = abs(float(rotation[0, 0, :, 2] @ direction(state[:, PHI], state[:, THETA])[0]))
    return THICKNESS / cos_inc


def test_module_scattering_uses_the_filtered_state(monkeypatch: pytest.MonkeyPatch) -> None:
    with_ms = _filter_states(monkeypatch, multiple_scattering=True, x0=X0)
    without = _filter_states(monkeypatch, multiple_scattering=False)
    predicted0, _, filtered0 = with_ms[0]
    # the measurement moved q/p by ~20% and theta by ~10 mrad: the test can tell the states apart
    assert abs(filtered0[0, QOP] / predicted0[0, QOP] - 1) > 0.1
    p, theta = 1.0 / abs(filtered0[0, QOP]), filtered0[0, THETA]
    theta0 = _highland_by_hand(p, _path_in_slab(filtered0) / X0)
    noise = np.zeros((6, 6))
    noise[PHI, PHI], noise[THETA, THETA] = theta0**2 / math.sin(theta) ** 2, theta0**2
    jac = _transport(filtered0)
    expected = jac @ noise @ jac.T
    added = with_ms[1][1][0] - without[1][1][0]
    np.testing.assert_allclose(added, expected, rtol=1e-6, atol=1e-14)
    # the same kink evaluated with the predicted state would be off by much more than that
    p_pred, theta_pred = 1.0 / abs(predicted0[0, QOP]), predicted0[0, THETA]
    wrong = _highland_by_hand(p_pred, _path_in_slab(predicted0) / X0) ** 2
    assert abs(wrong / theta0**2 - 1) > 0.2
    assert not math.isclose(added[THETA, THETA], (jac[THETA, THETA] ** 2) * wrong, rel_tol=0.1)
    assert theta_pred != pytest.approx(theta, abs=1e-3)


def test_slab_noise_is_highland_with_the_inclined_path() -> None:
    """The material-table path (``slab_noise``): full slab, path thickness / |cos|, the
    Highland width with beta and the log term, 1 / sin^2(theta) on phi."""
    params = np.array([[0.0, 0.0, 0.3, 0.7, -1.0 / 0.6, 0.0]])
    slab = np.array([[THICKNESS, X0, SILICON["molar_e_rho"], SILICON["excitation"]]])
    noise, _ = slab_noise(params, np.array([0.6]), slab)
    theta0 = _highland_by_hand(0.6, THICKNESS / 0.6 / X0)
    assert noise[0, THETA, THETA] == pytest.approx(theta0**2, rel=1e-12)
    assert noise[0, PHI, PHI] == pytest.approx(theta0**2 / math.sin(0.7) ** 2, rel=1e-12)


def test_module_energy_loss_uses_the_filtered_momentum(monkeypatch: pytest.MonkeyPatch,
                                                       ) -> None:
    """With a material-table slab the mean Bethe loss of module 0 lowers |q/p| before the
    prediction on module 1, evaluated with the filtered momentum and the inclined path. The
    slab is silicon at its real density (PDG: 2.329 g/cm^3, <Z/A> = 0.49848, I = 173 eV), so
    the loss (~0.1 MeV) and its momentum dependence are resolved."""
    slab = np.array([THICKNESS, X0, 2.329e-3 * 0.49848, 173e-9])
    states = _filter_states(monkeypatch, module_slab=np.broadcast_to(slab, (1, 2, 4)).copy())
    predicted0, filtered0, predicted1 = states[0][0], states[0][2], states[1][0]
    m = helix.PION_MASS

    def qop_after_loss(state: np.ndarray) -> float:
        de, _ = energy_loss(state[:, QOP], np.array([_path_in_slab(state)]), slab[2:3],
                            slab[3:4])
        p = 1.0 / abs(state[0, QOP])
        energy = math.sqrt(p * p + m * m) - float(de[0])
        return math.copysign(1.0 / math.sqrt(energy * energy - m * m), state[0, QOP])

    expected = qop_after_loss(filtered0)
    # ~0.1 MeV in 0.29 mm of silicon: a 1.5e-4 relative change of q/p
    assert 1e-4 < expected / filtered0[0, QOP] - 1 < 3e-4
    assert predicted1[0, QOP] == pytest.approx(expected, rel=1e-9)
    # the relative loss of the predicted state (another momentum, another path), applied to the
    # filtered q/p, misses by far more than that tolerance
    relative_pred = qop_after_loss(predicted0) / predicted0[0, QOP]
    assert abs(filtered0[0, QOP] * relative_pred / expected - 1) > 1e-6
