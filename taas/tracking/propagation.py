"""Bound parameters from one plane to another along the helix, with the transport Jacobian.

The Jacobian is analytic, chained as in ACTS' ``boundToBoundJacobian``:

    J = J_free->bound(B) . (1 - (dF/ds) n^T / (n . T)) . J_transport(s) . J_bound->free(A)

where the middle factor moves a varied end point back onto plane B along the trajectory (the
path length s depends on the start parameters through the intersection condition). The tests
compare it with central finite differences of ``propagate``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from taas.tracking import helix
from taas.tracking.parameters import (
    LOC0,
    LOC1,
    PHI,
    QOP,
    THETA,
    TIME,
    bound_to_free_matrix,
    free_to_bound_matrix,
)


class Propagation(NamedTuple):
    """Result of ``propagate`` for n tracks."""

    params: np.ndarray  #: (n, 6) bound parameters on the destination planes
    jacobian: np.ndarray | None  #: (n, 6, 6) d(params at B)/d(params at A), when asked for
    path: np.ndarray  #: (n,) path length (mm), negative when B lies behind A
    cos_incidence: np.ndarray  #: (n,) normal(B) . direction at B
    ok: np.ndarray  #: (n,) False where no intersection was found (params are then NaN)


def propagate(params: np.ndarray, src_center: np.ndarray, src_rotation: np.ndarray,
              dst_center: np.ndarray, dst_rotation: np.ndarray, *, bz: float,
              jacobian: bool = True, mass: float = helix.PION_MASS) -> Propagation:
    """Propagate bound parameters from planes A (src) to planes B (dst), one pair per row.

    One numba loop over the rows (``propagate_rows``): bound -> free, Newton intersection with
    the destination plane, bound parameters there and the chained Jacobian, without the
    (n, 8, 8) temporaries of a vectorised form (the CKF calls this for every candidate-module
    pair of every step)."""
    params = np.ascontiguousarray(params, dtype=float)
    n = len(params)
    arrays = [np.ascontiguousarray(a, dtype=float)
              for a in (src_center, src_rotation, dst_center, dst_rotation)]
    if any(len(a) != n for a in arrays):
        raise ValueError(f"propagate: {n} parameter rows but {[len(a) for a in arrays]} "
                         "source/destination centres and rotations")
    out = np.empty((n, 6))
    jac = np.empty((n if jacobian else 0, 6, 6))
    path, cos_inc, ok = np.empty(n), np.empty(n), np.empty(n, np.bool_)
    propagate_rows(params, *arrays, -helix.K_FIELD * bz, mass, jac, out, path, cos_inc, ok)
    return Propagation(out, jac if jacobian else None, path, cos_inc, ok)


@numba.njit(cache=True)
def propagate_rows(params: np.ndarray, src_center: np.ndarray, src_rotation: np.ndarray,
                    dst_center: np.ndarray, dst_rotation: np.ndarray, h_per_qop: float,
                    mass: float, jac: np.ndarray, out: np.ndarray, path: np.ndarray,
                    cos_inc: np.ndarray, ok_out: np.ndarray) -> None:
    """``propagate`` row by row; ``jac`` has no rows when no Jacobian is wanted."""
    want_jac = jac.shape[0] > 0
    t_mat = np.zeros((8, 8))
    tangent = np.zeros(8)
    b2f = np.zeros((8, 6))
    m1 = np.zeros((8, 6))
    f2b = np.zeros((6, 8))
    for i in range(len(params)):
        phi, theta, qop = params[i, PHI], params[i, THETA], params[i, QOP]
        rs = src_rotation[i]
        x0 = src_center[i, 0] + rs[0, 0] * params[i, 0] + rs[0, 1] * params[i, 1]
        y0 = src_center[i, 1] + rs[1, 0] * params[i, 0] + rs[1, 1] * params[i, 1]
        z0 = src_center[i, 2] + rs[2, 0] * params[i, 0] + rs[2, 1] * params[i, 1]
        sp, cp, st, ct = np.sin(phi), np.cos(phi), np.sin(theta), np.cos(theta)
        tx, ty, tz = cp * st, sp * st, ct
        h = h_per_qop * qop
        rd = dst_rotation[i]
        normal = rd[:, 2]
        s, ok = helix.plane_path(x0, y0, z0, tx, ty, tz, h, dst_center[i], normal,
                                 helix.PLANE_TOL, helix.PLANE_MAX_ITER)
        if not ok:
            s = 0.0
        x, y, z, tx1, ty1 = helix.point_on_helix(x0, y0, z0, tx, ty, tz, h, s)
        root = np.sqrt(1.0 + (mass * qop) ** 2)
        dx, dy, dz = x - dst_center[i, 0], y - dst_center[i, 1], z - dst_center[i, 2]
        phi1 = np.arctan2(ty1, tx1)
        theta1 = np.arctan2(np.hypot(tx1, ty1), tz)
        out[i, LOC0] = rd[0, 0] * dx + rd[1, 0] * dy + rd[2, 0] * dz
        out[i, LOC1] = rd[0, 1] * dx + rd[1, 1] * dy + rd[2, 1] * dz
        out[i, PHI], out[i, THETA], out[i, QOP] = phi1, theta1, qop
        out[i, TIME] = params[i, TIME] + s * root / helix.C_MM_PER_NS
        cos_inc[i] = normal[0] * tx1 + normal[1] * ty1 + normal[2] * tz
        path[i] = s
        ok_out[i] = ok
        if not ok:
            out[i, :] = np.nan
        if not want_jac:
            continue
        if not ok:
            jac[i, :, :] = np.nan
            continue
        helix.transport_matrix(t_mat, tangent, tx, ty, tz, qop, s, h_per_qop, mass)
        bound_to_free_matrix(b2f, rs, phi, theta)
        free_to_bound_matrix(f2b, rd, phi1, theta1)
        _chain(jac[i], f2b, t_mat, b2f, tangent, normal, cos_inc[i], m1)


@numba.njit(cache=True)
def _chain(out: np.ndarray, f2b: np.ndarray, t_mat: np.ndarray, b2f: np.ndarray,
           tangent: np.ndarray, normal: np.ndarray, cos_inc: float, m1: np.ndarray) -> None:
    """out = f2b (1 - tangent n^T / cos_inc) t_mat b2f, without forming the 8 x 8 middle."""
    _matmul_into(m1, t_mat, b2f)
    safe_cos = cos_inc if abs(cos_inc) > 1e-12 else 1.0
    for c in range(m1.shape[1]):
        proj = (normal[0] * m1[0, c] + normal[1] * m1[1, c] + normal[2] * m1[2, c]) / safe_cos
        for r in range(m1.shape[0]):
            m1[r, c] -= tangent[r] * proj
    _matmul_into(out, f2b, m1)


@numba.njit(cache=True)
def _matmul_into(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """out = a b for small matrices (no allocation, no BLAS call per track)."""
    for r in range(a.shape[0]):
        for c in range(b.shape[1]):
            acc = 0.0
            for k in range(a.shape[1]):
                acc += a[r, k] * b[k, c]
            out[r, c] = acc
