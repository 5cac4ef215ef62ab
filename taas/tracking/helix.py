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


def time_rate(qop: np.ndarray, mass: float = PION_MASS) -> np.ndarray:
    """dt/ds (ns/mm) for a unit-charge particle of mass ``mass``: 1 / (beta c)."""
    return np.sqrt(1.0 + (mass * np.asarray(qop, float)) ** 2) / C_MM_PER_NS


def helix_at(free: np.ndarray, s: np.ndarray, bz: float, mass: float = PION_MASS) -> np.ndarray:
    """Free parameters after a path length ``s`` (mm, may be negative) along the helix."""
    free = np.asarray(free, float)
    s = np.asarray(s, float)
    tx, ty, tz, qop = free[:, 4], free[:, 5], free[:, 6], free[:, QOP]
    a = turning_rate(qop, bz) * s
    sa, ca = _sinc(a), np.sin(a / 2) * _sinc(a / 2)
    out = free.copy()
    out[:, 0] += s * (sa * tx - ca * ty)
    out[:, 1] += s * (ca * tx + sa * ty)
    out[:, 2] += s * tz
    out[:, TIME] += s * time_rate(qop, mass)
    cos_a, sin_a = np.cos(a), np.sin(a)
    out[:, 4] = cos_a * tx - sin_a * ty
    out[:, 5] = sin_a * tx + cos_a * ty
    return out


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
    """
    free = np.asarray(free, float)
    center = np.asarray(center, float)
    normal = np.asarray(normal, float)
    dist = np.einsum("ni,ni->n", normal, center - free[:, POS])
    cos_inc = np.einsum("ni,ni->n", normal, free[:, DIR])
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = np.where(np.abs(cos_inc) > 1e-12, dist / cos_inc, np.nan)

    def residual(moved: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.einsum("ni,ni->n", normal[idx], moved[:, POS] - center[idx])
        return f, np.einsum("ni,ni->n", normal[idx], moved[:, DIR])

    return _newton_path(free, bz, s0, residual, tol=tol, max_iter=max_iter)


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
