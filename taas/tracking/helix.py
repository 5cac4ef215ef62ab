"""Analytic helix in a constant solenoid field along z, on free parameters.

Free parameters follow ACTS (``FreeVector``): ``(x, y, z, t, Tx, Ty, Tz, q/p)`` with positions in
mm, time in ns, T the unit momentum direction and q/p in e/GeV. In a field ``B = (0, 0, Bz)`` the
direction turns about z at a constant rate per unit path length s,

    dT/ds = (q/p) * K * (T x B),   K = 0.000299792458 GeV / (T mm),

so the azimuth of T changes as ``phi(s) = phi0 + h s`` with ``h = -K Bz q/p`` (a positive charge
in a positive field turns clockwise), while Tz is constant. Positions use the sinc form of the
helix, exact for any ``h`` and smooth through the straight-line limit ``h -> 0`` (no division by
the curvature anywhere).

Time assumes a particle of unit charge with the given mass hypothesis (pion by default):
``dt/ds = sqrt(1 + m^2 (q/p)^2) / c``.

Everything is vectorised over the leading axis: ``free`` is ``(n, 8)``, ``s`` is ``(n,)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

#: GeV / (T mm): p_T [GeV] = K * B [T] * R [mm] for unit charge.
K_FIELD = 0.000299792458
#: Speed of light in mm / ns.
C_MM_PER_NS = 299.792458
#: Default mass hypothesis (charged pion, GeV), as in the ACTS examples.
PION_MASS = 0.13957039

#: Free-vector slots.
POS = slice(0, 3)
TIME = 3
DIR = slice(4, 7)
QOP = 7

_SERIES_LIMIT = 1e-2  # below this |h s| the Taylor forms are exact to double precision


def turning_rate(qop: np.ndarray, bz: float) -> np.ndarray:
    """Change of the direction's azimuth per mm of path, ``h = -K Bz q/p`` (rad/mm)."""
    return -K_FIELD * bz * np.asarray(qop, float)


def _sinc(a: np.ndarray) -> np.ndarray:
    """sin(a) / a, 1 at a = 0."""
    return np.sinc(a / np.pi)


def _helix_kernels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S = sin(a)/a, C = (1 - cos a)/a and their derivatives in a, stable at a -> 0."""
    half = a / 2
    s_ = _sinc(a)
    c_ = np.sin(half) * _sinc(half)
    small = np.abs(a) < _SERIES_LIMIT
    a_safe = np.where(small, 1.0, a)
    a2 = a * a
    ds = np.where(small, -a / 3 + a * a2 / 30,
                  (a_safe * np.cos(a_safe) - np.sin(a_safe)) / a_safe**2)
    dc = np.where(small, 0.5 - a2 / 8 + a2 * a2 / 144,
                  (a_safe * np.sin(a_safe) - (1 - np.cos(a_safe))) / a_safe**2)
    return s_, c_, ds, dc


def helix_at(free: np.ndarray, s: np.ndarray, bz: float, mass: float = PION_MASS) -> np.ndarray:
    """Free parameters after a path length ``s`` (mm, may be negative) along the helix.

    A numba loop per row: the CKF and the fitter call this on a few thousand rows at a time,
    where a dozen numpy temporaries per call cost more than the arithmetic."""
    free = np.ascontiguousarray(free, dtype=float)
    s = np.broadcast_to(np.asarray(s, float), (len(free),))
    out = free.copy()
    _helix_rows(out, np.ascontiguousarray(s), -K_FIELD * bz, mass)
    return out


@numba.njit(cache=True)
def _helix_rows(out: np.ndarray, s: np.ndarray, h_per_qop: float, mass: float) -> None:
    """``helix_at`` in place on ``out`` (a copy of the start parameters)."""
    for i in range(len(out)):
        tx, ty, tz, qop = out[i, 4], out[i, 5], out[i, 6], out[i, QOP]
        si = s[i]
        a = h_per_qop * qop * si
        sa = np.sinc(a / np.pi)
        ca = np.sin(a / 2) * np.sinc(a / 2 / np.pi)
        out[i, 0] += si * (sa * tx - ca * ty)
        out[i, 1] += si * (ca * tx + sa * ty)
        out[i, 2] += si * tz
        out[i, TIME] += si * (np.sqrt(1.0 + (mass * qop) ** 2) / C_MM_PER_NS)
        cos_a, sin_a = np.cos(a), np.sin(a)
        out[i, 4] = cos_a * tx - sin_a * ty
        out[i, 5] = sin_a * tx + cos_a * ty


def _newton_path(free: np.ndarray, bz: float, s0: np.ndarray,
                 residual: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                 *, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``residual(helix_at(free, s)) = 0`` for s by Newton's method, all rows at once.

    ``residual(moved, rows)`` returns (f, df/ds) for the free vectors ``moved`` of ``rows``.
    Rows whose step stays above ``tol`` after ``max_iter`` iterations, or whose derivative
    vanishes, come back not ok.
    """
    s = np.array(s0, float)
    ok = np.isfinite(s)
    s = np.where(ok, s, 0.0)
    active = ok.copy()
    for _ in range(max_iter):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        f, df = residual(helix_at(free[idx], s[idx], bz), idx)
        good = np.isfinite(f) & np.isfinite(df) & (np.abs(df) > 1e-300)
        step = np.where(good, f / np.where(good, df, 1.0), 0.0)
        s[idx] -= step
        ok[idx[~good]] = False
        done = ~good | (np.abs(step) <= tol * np.maximum(1.0, np.abs(s[idx])))
        active[idx[done]] = False
    ok &= ~active & np.isfinite(s)
    return s, ok


def intersect_plane(free: np.ndarray, center: np.ndarray, normal: np.ndarray, bz: float, *,
                    tol: float = 1e-12, max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Path length from ``free`` to the plane through ``center`` with unit ``normal``.

    Newton iteration on ``f(s) = normal . (x(s) - center)`` (f' = normal . T(s)), started from
    the straight-line intersection. That start picks the crossing nearest along the tangent, the
    one a track following its layers wants; a helix may cross a plane again after looping, and
    those later crossings are never returned. Returns ``(s, ok)``; ``ok`` is False where the
    track runs parallel to the plane or Newton did not converge (relative step ``tol``).
    A numba loop per row (the CKF's hottest call: every candidate-module pair of every step),
    the same iteration as ``_newton_path`` with ``helix_at``'s position and direction.
    """
    free = np.ascontiguousarray(free, dtype=float)
    center = np.ascontiguousarray(center, dtype=float)
    normal = np.ascontiguousarray(normal, dtype=float)
    n = len(free)
    if not len(center) == len(normal) == n:
        raise ValueError(f"intersect_plane: {n} tracks, {len(center)} centres, "
                         f"{len(normal)} normals")
    s = np.empty(n)
    ok = np.empty(n, np.bool_)
    _intersect_plane_rows(free, center, normal, -K_FIELD * bz, tol, max_iter, s, ok)
    return s, ok


@numba.njit(cache=True)
def _intersect_plane_rows(free: np.ndarray, center: np.ndarray, normal: np.ndarray,
                          h_per_qop: float, tol: float, max_iter: int, s_out: np.ndarray,
                          ok_out: np.ndarray) -> None:
    """``intersect_plane`` for every row: straight-line start, then Newton on the helix."""
    for i in range(len(free)):
        nx, ny, nz = normal[i, 0], normal[i, 1], normal[i, 2]
        tx, ty, tz = free[i, 4], free[i, 5], free[i, 6]
        dist = (nx * (center[i, 0] - free[i, 0]) + ny * (center[i, 1] - free[i, 1])
                + nz * (center[i, 2] - free[i, 2]))
        cos_inc = nx * tx + ny * ty + nz * tz
        s = dist / cos_inc if abs(cos_inc) > 1e-12 else np.nan
        ok = np.isfinite(s)
        if not ok:
            s = 0.0
        h = h_per_qop * free[i, QOP]
        converged = not ok
        for _ in range(max_iter):
            if converged:
                break
            a = h * s
            sa = np.sinc(a / np.pi)
            ca = np.sin(a / 2) * np.sinc(a / 2 / np.pi)
            x = free[i, 0] + s * (sa * tx - ca * ty)
            y = free[i, 1] + s * (ca * tx + sa * ty)
            z = free[i, 2] + s * tz
            cos_a, sin_a = np.cos(a), np.sin(a)
            f = nx * (x - center[i, 0]) + ny * (y - center[i, 1]) + nz * (z - center[i, 2])
            df = nx * (cos_a * tx - sin_a * ty) + ny * (sin_a * tx + cos_a * ty) + nz * tz
            good = np.isfinite(f) and np.isfinite(df) and abs(df) > 1e-300
            step = f / df if good else 0.0
            s -= step
            if not good:
                ok = False
            converged = not good or abs(step) <= tol * max(1.0, abs(s))
        s_out[i] = s
        ok_out[i] = ok and converged and np.isfinite(s)


def path_to_beamline(free: np.ndarray, bz: float, *, tol: float = 1e-12,
                     max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Path length to the point of closest approach to the z axis in the transverse plane.

    Solves ``g(s) = x_T(s) . T_T(s) = 0`` (the transverse position is orthogonal to the
    transverse direction at the PCA) by Newton, started from the straight-line PCA.
    """
    free = np.asarray(free, float)
    tt2 = free[:, 4] ** 2 + free[:, 5] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = np.where(tt2 > 1e-24, -(free[:, 0] * free[:, 4] + free[:, 1] * free[:, 5]) / tt2,
                      np.nan)
    h_all = turning_rate(free[:, QOP], bz)

    def residual(moved: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y, tx, ty = moved[:, 0], moved[:, 1], moved[:, 4], moved[:, 5]
        g = x * tx + y * ty
        dg = tx * tx + ty * ty + h_all[idx] * (x * -ty + y * tx)
        return g, dg

    return _newton_path(free, bz, s0, residual, tol=tol, max_iter=max_iter)


def transport_jacobian(free: np.ndarray, s: np.ndarray, bz: float,
                       mass: float = PION_MASS) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian of the free parameters at path ``s`` w.r.t. those at 0 (s held fixed).

    Returns ``(J, dF/ds)``: J is ``(n, 8, 8)``, the derivative of the end point with respect to
    the start point for a fixed path length; ``dF/ds`` is ``(n, 8)``, the tangent of the
    trajectory at the end point, which surface-constraint corrections need.
    """
    free = np.asarray(free, float)
    s = np.asarray(s, float)
    n = len(free)
    tx, ty, qop = free[:, 4], free[:, 5], free[:, QOP]
    h = turning_rate(qop, bz)
    a = h * s
    sa, ca, dsa, dca = _helix_kernels(a)
    cos_a, sin_a = np.cos(a), np.sin(a)
    dadq = -K_FIELD * bz * s  # d a / d(q/p)

    jac = np.zeros((n, 8, 8))
    idx3 = np.arange(3)
    jac[:, idx3, idx3] = 1.0
    jac[:, TIME, TIME] = 1.0
    jac[:, QOP, QOP] = 1.0
    # position w.r.t. initial direction: x = x0 + s M(a) T0
    jac[:, 0, 4], jac[:, 0, 5] = s * sa, -s * ca
    jac[:, 1, 4], jac[:, 1, 5] = s * ca, s * sa
    jac[:, 2, 6] = s
    # position w.r.t. q/p through a
    jac[:, 0, QOP] = s * (dsa * tx - dca * ty) * dadq
    jac[:, 1, QOP] = s * (dca * tx + dsa * ty) * dadq
    # direction: T = Rz(a) T0
    jac[:, 4, 4], jac[:, 4, 5] = cos_a, -sin_a
    jac[:, 5, 4], jac[:, 5, 5] = sin_a, cos_a
    jac[:, 6, 6] = 1.0
    tx_end = cos_a * tx - sin_a * ty
    ty_end = sin_a * tx + cos_a * ty
    jac[:, 4, QOP] = -ty_end * dadq
    jac[:, 5, QOP] = tx_end * dadq
    # time
    root = np.sqrt(1.0 + (mass * qop) ** 2)
    jac[:, TIME, QOP] = s * mass**2 * qop / (C_MM_PER_NS * root)

    tangent = np.zeros((n, 8))
    tangent[:, 0], tangent[:, 1], tangent[:, 2] = tx_end, ty_end, free[:, 6]
    tangent[:, TIME] = root / C_MM_PER_NS
    tangent[:, 4], tangent[:, 5] = -h * ty_end, h * tx_end
    return jac, tangent
