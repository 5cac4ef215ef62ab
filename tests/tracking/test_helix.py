"""The helix against independent computations: ODE integration, scipy root finding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq, minimize_scalar

from taas.tracking import helix
from taas.tracking.parameters import (
    bound_to_free,
    direction,
    free_to_bound,
    numerical_jacobian,
)
from taas.tracking.propagation import propagate
from tests.tracking.toy import random_rotations

BZ = 2.0


def random_free(n: int, rng: np.random.Generator, pt: tuple[float, float] = (0.3, 20.0),
                ) -> np.ndarray:
    free = np.zeros((n, 8))
    free[:, :3] = rng.normal(0, 50, (n, 3))
    free[:, helix.TIME] = rng.uniform(0, 5, n)
    theta = rng.uniform(0.3, np.pi - 0.3, n)
    free[:, helix.DIR] = direction(rng.uniform(-np.pi, np.pi, n), theta)
    free[:, helix.QOP] = rng.choice([-1, 1], n) * np.sin(theta) / rng.uniform(*pt, n)
    return free


def lorentz_rhs(qop: float, bz: float):
    """d/ds of (x, y, z, Tx, Ty, Tz): the equation of motion, dT/ds = (q/p) K T x B."""
    def rhs(_s, y):
        t = y[3:]
        return np.concatenate([t, qop * helix.K_FIELD * np.cross(t, [0.0, 0.0, bz])])
    return rhs


def test_helix_matches_integrated_equation_of_motion():
    rng = np.random.default_rng(0)
    free = random_free(20, rng)
    s = rng.uniform(-800, 800, 20)
    moved = helix.helix_at(free, s, BZ)
    for i in range(20):
        sol = solve_ivp(lorentz_rhs(free[i, helix.QOP], BZ), (0, s[i]),
                        np.concatenate([free[i, :3], free[i, helix.DIR]]), rtol=1e-11,
                        atol=1e-11)
        np.testing.assert_allclose(moved[i, :3], sol.y[:3, -1], atol=1e-6)
        np.testing.assert_allclose(moved[i, helix.DIR], sol.y[3:, -1], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(moved[:, helix.DIR], axis=1), 1, atol=1e-14)


def test_curvature_radius_and_turning_sense():
    """p_T = 0.3 B R (GeV, T, m); a positive charge turns clockwise in +Bz."""
    free = np.zeros((1, 8))
    free[0, helix.DIR] = [1.0, 0.0, 0.0]
    free[0, helix.QOP] = 1.0  # +1 e, 1 GeV
    radius = 1.0 / (helix.K_FIELD * BZ)  # 1667.8 mm
    half_turn = helix.helix_at(free, np.array([np.pi * radius]), BZ)
    np.testing.assert_allclose(half_turn[0, :3], [0.0, -2 * radius, 0.0], atol=1e-9)
    np.testing.assert_allclose(half_turn[0, helix.DIR], [-1.0, 0.0, 0.0], atol=1e-12)


def test_straight_line_limit_is_smooth():
    rng = np.random.default_rng(1)
    free = random_free(5, rng)
    s = np.full(5, 300.0)
    straight = free.copy()
    straight[:, helix.QOP] = 0.0
    line = helix.helix_at(straight, s, BZ)
    np.testing.assert_allclose(line[:, :3], free[:, :3] + s[:, None] * free[:, helix.DIR],
                               atol=1e-12)
    # a tiny curvature moves the end point continuously (no 0/0 in the sinc forms)
    nearly = straight.copy()
    nearly[:, helix.QOP] = 1e-9
    np.testing.assert_allclose(helix.helix_at(nearly, s, BZ)[:, :3], line[:, :3], atol=1e-7)


def test_plane_intersection_matches_brentq():
    rng = np.random.default_rng(2)
    n = 50
    free = random_free(n, rng)
    s_true = rng.uniform(20, 600, n)
    point = helix.helix_at(free, s_true, BZ)
    # planes through a helix point, normals tilted up to ~60 degrees from the direction there
    normal = point[:, helix.DIR] + rng.normal(0, 0.5, (n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    center = point[:, :3] + np.cross(normal, rng.normal(size=(n, 3))) * 10
    s, ok = helix.intersect_plane(free, center, normal, BZ)
    assert ok.all()
    for i in range(n):
        def f(x, i=i):
            return normal[i] @ (helix.helix_at(free[i:i + 1], np.array([x]), BZ)[0, :3]
                                - center[i])
        root = brentq(f, s_true[i] - 15, s_true[i] + 15, xtol=1e-12)
        assert s[i] == pytest.approx(root, abs=1e-8)
    moved = helix.helix_at(free, s, BZ)
    np.testing.assert_allclose(np.einsum("ni,ni->n", normal, moved[:, :3] - center), 0,
                               atol=1e-9)


def test_parallel_plane_is_reported():
    free = np.zeros((1, 8))
    free[0, helix.DIR] = [0.0, 0.0, 1.0]
    free[0, helix.QOP] = 0.5
    _, ok = helix.intersect_plane(free, np.array([[0.0, 0.0, 10.0]]),
                                  np.array([[1.0, 0.0, 0.0]]), BZ)
    assert not ok[0]


def test_beamline_pca_matches_minimisation():
    rng = np.random.default_rng(3)
    free = random_free(30, rng, pt=(0.5, 20.0))
    s, ok = helix.path_to_beamline(free, BZ)
    assert ok.all()
    for i in range(30):
        def r2(x, i=i):
            return np.sum(helix.helix_at(free[i:i + 1], np.array([x]), BZ)[0, :2] ** 2)
        best = minimize_scalar(r2, bracket=(s[i] - 5, s[i] + 5), tol=1e-12)
        assert r2(s[i]) <= r2(best.x) + 1e-9
        assert s[i] == pytest.approx(best.x, abs=1e-3)


def test_free_transport_jacobian_matches_finite_differences():
    rng = np.random.default_rng(4)
    free = random_free(20, rng)
    s = rng.uniform(-500, 500, 20)
    jac, tangent = np.empty((20, 8, 8)), np.empty((20, 8))
    for i in range(20):
        helix.transport_matrix(jac[i], tangent[i], *free[i, 4:8], s[i], -helix.K_FIELD * BZ,
                               helix.PION_MASS)
    steps = np.array([1e-3, 1e-3, 1e-3, 1e-3, 1e-6, 1e-6, 1e-6, 1e-6])
    s_rep = np.tile(s, 16)
    fd = numerical_jacobian(lambda x: helix.helix_at(x, s_rep, BZ), free, steps)
    np.testing.assert_allclose(jac, fd, atol=2e-6 * np.abs(fd).max())
    fd_s = (helix.helix_at(free, s + 1e-4, BZ) - helix.helix_at(free, s - 1e-4, BZ)) / 2e-4
    np.testing.assert_allclose(tangent, fd_s, atol=1e-8)


@pytest.mark.parametrize("pt", [(0.5, 2.0), (50.0, 1e4)])
def test_bound_transport_jacobian_matches_finite_differences(pt):
    rng = np.random.default_rng(5)
    n = 40
    src_rot = random_rotations(n, rng)
    src_center = rng.normal(0, 100, (n, 3))
    params = np.column_stack([rng.normal(0, 10, n), rng.normal(0, 10, n),
                              rng.uniform(-np.pi, np.pi, n), rng.uniform(0.4, 2.7, n),
                              rng.choice([-1, 1], n) / rng.uniform(*pt, n), rng.uniform(0, 3, n)])
    free = bound_to_free(params, src_center, src_rot)
    ahead = helix.helix_at(free, rng.uniform(50, 500, n), BZ)
    dst_rot = random_rotations(n, rng)
    flip = np.einsum("ni,ni->n", dst_rot[:, :, 2], ahead[:, helix.DIR]) < 0.3
    # keep incidence away from grazing so the Jacobian is well conditioned
    dst_rot[flip, :, 2] = ahead[flip, helix.DIR]
    dst_rot[flip] = np.linalg.qr(dst_rot[flip][:, :, [2, 0, 1]])[0][:, :, [1, 2, 0]]
    dst_rot *= np.sign(np.linalg.det(dst_rot))[:, None, None]
    dst_center = ahead[:, :3] + np.einsum("nij,nj->ni", dst_rot[:, :, :2],
                                          rng.normal(0, 5, (n, 2)))
    prop = propagate(params, src_center, src_rot, dst_center, dst_rot, bz=BZ)
    assert prop.ok.all()
    assert (prop.path > 0).all()
    # the helix at the returned path lies on the destination plane, at the returned parameters
    end = helix.helix_at(free, prop.path, BZ)
    np.testing.assert_allclose(np.einsum("ni,ni->n", dst_rot[:, :, 2], end[:, :3] - dst_center),
                               0, atol=1e-9)
    np.testing.assert_allclose(free_to_bound(end, dst_center, dst_rot), prop.params, atol=1e-9)

    def moved(x: np.ndarray) -> np.ndarray:
        reps = len(x) // n
        return propagate(x, np.tile(src_center, (reps, 1)), np.tile(src_rot, (reps, 1, 1)),
                         np.tile(dst_center, (reps, 1)), np.tile(dst_rot, (reps, 1, 1)),
                         bz=BZ, jacobian=False).params

    # q/p step: relative 1e-4, but not below 1e-6 (rounding of ~1 m positions)
    qop_step = np.maximum(1e-4 * np.abs(params[:, 4]), 1e-6)
    steps = np.column_stack([np.full(n, 1e-4), np.full(n, 1e-4), np.full(n, 1e-7),
                             np.full(n, 1e-7), qop_step, np.full(n, 1e-4)])
    fd = numerical_jacobian(moved, params, steps)
    scale = np.abs(fd).max(axis=2, keepdims=True)  # per output row
    np.testing.assert_allclose(prop.jacobian / scale, fd / scale, atol=1e-6)
