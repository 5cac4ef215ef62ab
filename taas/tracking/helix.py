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

The public array functions are vectorised over the leading axis: ``free`` is ``(n, 8)``,
``s`` is ``(n,)``; ``point_on_helix``, ``plane_path`` and ``transport_matrix`` are the
one-track forms the numba loops (here and in ``taas.tracking.propagation``) call.
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

SERIES_LIMIT = 1e-2  # below this |h s| the Taylor forms are exact to double precision
#: Newton's stopping rule for plane intersections: relative step, and iterations allowed.
PLANE_TOL = 1e-12
PLANE_MAX_ITER = 30


def turning_rate(qop: np.ndarray, bz: float) -> np.ndarray:
    """Change of the direction's azimuth per mm of path, ``h = -K Bz q/p`` (rad/mm)."""
    return -K_FIELD * bz * np.asarray(qop, float)


def helix_at(free: np.ndarray, s: np.ndarray, bz: float, mass: float = PION_MASS) -> np.ndarray:
    """Free parameters after a path length ``s`` (mm, may be negative) along the helix.

    A numba loop per row: the CKF and the fitter call this on a few thousand rows at a time,
    where a dozen numpy temporaries per call cost more than the arithmetic."""
    free = np.ascontiguousarray(free, dtype=float)
    s = np.broadcast_to(np.asarray(s, float), (len(free),))
    out = np.empty_like(free)
    _helix_rows(free, np.ascontiguousarray(s), -K_FIELD * bz, mass, out)
    return out


@numba.njit(cache=True)
def _helix_rows(free: np.ndarray, s: np.ndarray, h_per_qop: float, mass: float,
                out: np.ndarray) -> None:
    """``helix_at`` row by row into ``out``."""
    for i in range(len(free)):
        state_at(free[i], s[i], h_per_qop, mass, out[i])


@numba.njit(cache=True)
def state_at(free: np.ndarray, s: float, h_per_qop: float, mass: float,
             out: np.ndarray) -> None:
    """``helix_at`` of one free vector (8,), written into ``out`` (8,)."""
    qop = free[QOP]
    out[:] = free
    out[0], out[1], out[2], out[4], out[5] = point_on_helix(
        free[0], free[1], free[2], free[4], free[5], free[6], h_per_qop * qop, s)
    out[TIME] += s * np.sqrt(1.0 + (mass * qop) ** 2) / C_MM_PER_NS


@numba.njit(cache=True)
def sinc_terms(a: float) -> tuple[float, float]:
    """S = sin(a)/a and C = (1 - cos a)/a, stable through a = 0 (sinc forms)."""
    return np.sinc(a / np.pi), np.sin(a / 2) * np.sinc(a / 2 / np.pi)


@numba.njit(cache=True)
def point_on_helix(x: float, y: float, z: float, tx: float, ty: float, tz: float, h: float,
                   s: float) -> tuple[float, float, float, float, float]:
    """Position and transverse direction after path ``s`` from (x, y, z) along unit direction
    (tx, ty, tz) turning at ``h`` rad/mm: the scalar form of ``helix_at`` for numba loops."""
    a = h * s
    sa, ca = sinc_terms(a)
    cos_a, sin_a = np.cos(a), np.sin(a)
    return (x + s * (sa * tx - ca * ty), y + s * (ca * tx + sa * ty), z + s * tz,
            cos_a * tx - sin_a * ty, sin_a * tx + cos_a * ty)


@numba.njit(cache=True)
def cylinder_path(x0: float, y0: float, tx: float, ty: float, h: float, radius: float,
                   s_min: float) -> float:
    """Smallest path s > s_min where the helix reaches transverse radius ``radius`` (inf: none).

    The transverse projection is a circle of centre c = (x0 - ty/h, y0 + tx/h); its crossings
    with the circle r = radius follow from circle-circle intersection, and the path to each is
    the turning angle from the start, taken in the direction of motion, over the rate h.
    """
    st2 = tx * tx + ty * ty
    if st2 < 1e-24:
        return np.inf
    best = np.inf
    if abs(h) * (radius + np.hypot(x0, y0)) < 1e-9:  # straight line in the transverse plane
        b = (x0 * tx + y0 * ty) / st2
        c = (x0 * x0 + y0 * y0 - radius * radius) / st2
        disc = b * b - c
        if disc < 0:
            return np.inf
        root = np.sqrt(disc)
        for s in (-b - root, -b + root):
            if s > s_min and s < best:
                best = s
        return best
    cx, cy = x0 - ty / h, y0 + tx / h
    d = np.hypot(cx, cy)
    rho = np.sqrt(st2) / abs(h)
    if d < 1e-12:
        return np.inf
    a_ = (radius * radius - rho * rho + d * d) / (2.0 * d)
    hh = radius * radius - a_ * a_
    if hh < 0:
        return np.inf
    root = np.sqrt(hh)
    ux, uy = cx / d, cy / d
    w0x, w0y = x0 - cx, y0 - cy
    for sign in (-1.0, 1.0):
        px = a_ * ux - sign * root * uy - cx
        py = a_ * uy + sign * root * ux - cy
        ang = np.arctan2(w0x * py - w0y * px, w0x * px + w0y * py)
        if ang * h < 0:
            ang += 2.0 * np.pi if h > 0 else -2.0 * np.pi
        s = ang / h
        if s > s_min and s < best:
            best = s
    return best


@numba.njit(cache=True)
def plane_path(x: float, y: float, z: float, tx: float, ty: float, tz: float, h: float,
               center: np.ndarray, normal: np.ndarray, tol: float, max_iter: int
               ) -> tuple[float, bool]:
    """``intersect_plane`` for one track (scalars) and one plane: (s, ok)."""
    nx, ny, nz = normal[0], normal[1], normal[2]
    dist = nx * (center[0] - x) + ny * (center[1] - y) + nz * (center[2] - z)
    cos_inc = nx * tx + ny * ty + nz * tz
    s = dist / cos_inc if abs(cos_inc) > 1e-12 else np.nan
    ok = np.isfinite(s)
    if not ok:
        s = 0.0
    converged = not ok
    for _ in range(max_iter):
        if converged:
            break
        px, py, pz, dx, dy = point_on_helix(x, y, z, tx, ty, tz, h, s)
        f = nx * (px - center[0]) + ny * (py - center[1]) + nz * (pz - center[2])
        df = nx * dx + ny * dy + nz * tz
        good = np.isfinite(f) and np.isfinite(df) and abs(df) > 1e-300
        step = f / df if good else 0.0
        s -= step
        if not good:
            ok = False
        converged = not good or abs(step) <= tol * max(1.0, abs(s))
    return s, ok and converged and np.isfinite(s)


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
                    tol: float = PLANE_TOL, max_iter: int = PLANE_MAX_ITER,
                    ) -> tuple[np.ndarray, np.ndarray]:
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
        s_out[i], ok_out[i] = plane_path(free[i, 0], free[i, 1], free[i, 2], free[i, 4],
                                         free[i, 5], free[i, 6], h_per_qop * free[i, QOP],
                                         center[i], normal[i], tol, max_iter)


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


@numba.njit(cache=True)
def sinc_derivatives(a: float) -> tuple[float, float]:
    """d/da of sin(a)/a and of (1 - cos a)/a, by their series below |a| = SERIES_LIMIT."""
    if abs(a) < SERIES_LIMIT:
        a2 = a * a
        return -a / 3 + a * a2 / 30, 0.5 - a2 / 8 + a2 * a2 / 144
    return (a * np.cos(a) - np.sin(a)) / (a * a), (a * np.sin(a) - (1 - np.cos(a))) / (a * a)


@numba.njit(cache=True)
def transport_matrix(jac: np.ndarray, tangent: np.ndarray, tx: float, ty: float, tz: float,
                     qop: float, s: float, h_per_qop: float, mass: float) -> None:
    """Fill ``jac`` (8, 8) and ``tangent`` (8,) for one track with unit direction (tx, ty, tz)
    at path ``s``: x = x0 + s M(a) T0 and T = Rz(a) T0 with a = h s, h = h_per_qop q/p."""
    h = h_per_qop * qop
    a = h * s
    sa, ca = sinc_terms(a)
    dsa, dca = sinc_derivatives(a)
    cos_a, sin_a = np.cos(a), np.sin(a)
    dadq = h_per_qop * s  # d a / d(q/p)
    tx_end = cos_a * tx - sin_a * ty
    ty_end = sin_a * tx + cos_a * ty
    root = np.sqrt(1.0 + (mass * qop) ** 2)
    jac[:, :] = 0.0
    for k in (0, 1, 2, TIME, 6, QOP):
        jac[k, k] = 1.0
    # position w.r.t. the initial direction and, through a, q/p
    jac[0, 4], jac[0, 5] = s * sa, -s * ca
    jac[1, 4], jac[1, 5] = s * ca, s * sa
    jac[2, 6] = s
    jac[0, QOP] = s * (dsa * tx - dca * ty) * dadq
    jac[1, QOP] = s * (dca * tx + dsa * ty) * dadq
    # direction: T = Rz(a) T0
    jac[4, 4], jac[4, 5] = cos_a, -sin_a
    jac[5, 4], jac[5, 5] = sin_a, cos_a
    jac[4, QOP] = -ty_end * dadq
    jac[5, QOP] = tx_end * dadq
    # time
    jac[TIME, QOP] = s * mass * mass * qop / (C_MM_PER_NS * root)
    tangent[0], tangent[1], tangent[2] = tx_end, ty_end, tz
    tangent[TIME] = root / C_MM_PER_NS
    tangent[4], tangent[5] = -h * ty_end, h * tx_end
    tangent[6] = tangent[QOP] = 0.0
