"""Parameter conversions: round trips, Jacobians, the perigee sign convention."""

from __future__ import annotations

import numpy as np

from taas.tracking import helix
from taas.tracking.parameters import (
    D0,
    PHI,
    THETA,
    Z0,
    bound_to_free,
    bound_to_free_matrix,
    bound_to_perigee,
    direction_angles,
    free_to_bound,
    free_to_bound_matrix,
    free_to_perigee,
    numerical_jacobian,
    perigee_to_free,
    wrap_phi,
)
from tests.tracking.toy import random_rotations

BZ = 2.0


def random_bound(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.column_stack([rng.normal(0, 20, n), rng.normal(0, 20, n),
                            rng.uniform(-np.pi, np.pi, n), rng.uniform(0.2, np.pi - 0.2, n),
                            rng.choice([-1, 1], n) / rng.uniform(0.5, 50, n),
                            rng.uniform(0, 10, n)])


def random_perigee(n: int, rng: np.random.Generator) -> np.ndarray:
    perigee = random_bound(n, rng)
    perigee[:, D0] = rng.normal(0, 2, n)
    perigee[:, Z0] = rng.normal(0, 50, n)
    return perigee


def test_bound_free_round_trip():
    rng = np.random.default_rng(0)
    n = 200
    params = random_bound(n, rng)
    center, rot = rng.normal(0, 300, (n, 3)), random_rotations(n, rng)
    free = bound_to_free(params, center, rot)
    np.testing.assert_allclose(np.linalg.norm(free[:, helix.DIR], axis=1), 1, atol=1e-15)
    # the position is on the plane: w = 0
    np.testing.assert_allclose(np.einsum("ni,ni->n", rot[:, :, 2], free[:, :3] - center), 0,
                               atol=1e-12)
    np.testing.assert_allclose(free_to_bound(free, center, rot), params, atol=1e-12)


def test_bound_free_jacobians_are_derivatives_and_inverses():
    rng = np.random.default_rng(1)
    n = 30
    params = random_bound(n, rng)
    center, rot = rng.normal(0, 300, (n, 3)), random_rotations(n, rng)
    jac_bf = np.empty((n, 8, 6))
    jac_fb = np.empty((n, 6, 8))
    free = bound_to_free(params, center, rot)
    phi, theta = direction_angles(free[:, helix.DIR])
    for i in range(n):
        bound_to_free_matrix(jac_bf[i], rot[i], params[i, PHI], params[i, THETA])
        free_to_bound_matrix(jac_fb[i], rot[i], phi[i], theta[i])
    fd = numerical_jacobian(lambda x: bound_to_free(x, np.tile(center, (12, 1)),
                                                    np.tile(rot, (12, 1, 1))),
                            params, np.array([1e-3, 1e-3, 1e-6, 1e-6, 1e-6, 1e-3]))
    np.testing.assert_allclose(jac_bf, fd, atol=1e-8)
    np.testing.assert_allclose(jac_fb @ jac_bf, np.broadcast_to(np.eye(6), (n, 6, 6)),
                               atol=1e-12)


def test_perigee_free_round_trip():
    rng = np.random.default_rng(2)
    perigee = random_perigee(300, rng)
    free = perigee_to_free(perigee)
    back = free_to_perigee(free, BZ)
    np.testing.assert_allclose(back, perigee, atol=1e-9)
    # anywhere along the helix, backwards or forwards, the PCA is found again
    moved = helix.helix_at(free, rng.uniform(-400, 400, 300), BZ)
    back = free_to_perigee(moved, BZ)
    back[:, PHI] = perigee[:, PHI] + wrap_phi(back[:, PHI] - perigee[:, PHI])
    np.testing.assert_allclose(back, perigee, atol=1e-8)


def test_perigee_sign_convention():
    """ACTS: d0 > 0 when the beam line is to the right of the transverse direction."""
    free = np.zeros((2, 8))
    free[:, 1] = [3.0, -3.0]  # passing above / below the origin, moving along +x
    free[:, helix.DIR] = [1.0, 0.0, 0.0]
    free[:, helix.QOP] = 1e-6
    perigee = free_to_perigee(free, BZ)
    np.testing.assert_allclose(perigee[:, D0], [3.0, -3.0], atol=1e-6)


def test_bound_perigee_round_trip_and_covariance():
    rng = np.random.default_rng(3)
    n = 50
    perigee = random_perigee(n, rng)
    perigee[:, 4] = rng.choice([-1, 1], n) / rng.uniform(0.5, 5, n)
    start = perigee_to_free(perigee)
    on_plane = helix.helix_at(start, rng.uniform(50, 300, n), BZ)
    # a randomly oriented module through that point
    rot = random_rotations(n, rng)
    center = on_plane[:, :3] + np.einsum("nij,nj->ni", rot[:, :, :2], rng.normal(0, 5, (n, 2)))
    params = free_to_bound(on_plane, center, rot)
    sig = np.array([0.01, 0.05, 1e-3, 1e-3, 1e-3, 0.1])
    corr = np.eye(6) + 0.3 * (np.eye(6, k=1) + np.eye(6, k=-1))
    cov = np.broadcast_to(corr * np.outer(sig, sig), (n, 6, 6)).copy()
    got, got_cov = bound_to_perigee(params, cov, center, rot, bz=BZ)
    got[:, PHI] = perigee[:, PHI] + wrap_phi(got[:, PHI] - perigee[:, PHI])
    np.testing.assert_allclose(got, perigee, atol=1e-8)
    # Monte Carlo: sampled bound parameters mapped to perigee have the transported covariance
    i = 0
    samples = rng.multivariate_normal(params[i], cov[i] * 1e-4, 20000)
    mapped, _ = bound_to_perigee(samples, None, np.tile(center[i], (20000, 1)),
                                 np.tile(rot[i], (20000, 1, 1)), bz=BZ)
    norm = np.sqrt(np.outer(np.diag(got_cov[i]), np.diag(got_cov[i]))) * 1e-4
    np.testing.assert_allclose(np.cov(mapped.T) / norm, got_cov[i] * 1e-4 / norm, atol=0.03)
