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
one-track forms the numba loops (here and in ``taas.tracking.propagation``) call: the numba
flavour of ``taas.tracking.batched.formulas``, whose torch flavour the batched GPU fit runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from taas.tracking.batched import constants as _constants
from taas.tracking.batched.flavours import NUMBA as _formulas

#: GeV / (T mm): p_T [GeV] = K * B [T] * R [mm] for unit charge.
K_FIELD = _constants.K_FIELD
#: Speed of light in mm / ns.
C_MM_PER_NS = _constants.C_MM_PER_NS
#: Default mass hypothesis (charged pion, GeV), as in the ACTS examples.
PION_MASS = _constants.PION_MASS
#: Newton's stopping rule for plane intersections: relative step, and iterations allowed.
PLANE_TOL = _constants.PLANE_TOL
PLANE_MAX_ITER = _constants.PLANE_MAX_ITER

#: Free-vector slots.
POS = slice(0, 3)
TIME = 3
DIR = slice(4, 7)
QOP = 7

#: The one-track forms shared with the batched torch fit (``taas.tracking.batched.formulas``).
sinc_terms = _formulas.sinc_terms
sinc_derivatives = _formulas.sinc_derivatives
point_on_helix = _formulas.point_on_helix
plane_path = _formulas.plane_path
transport_matrix = _formulas.transport_matrix
cylinder_path = _formulas.cylinder_path
#: ``helix_at`` of one free vector (8,), written into ``out`` (8,).
state_at = _formulas.free_state_at


def turning_rate(qop: np.ndarray, bz: float | np.ndarray) -> np.ndarray:
    """Change of the direction's azimuth per mm of path, ``h = -K Bz q/p`` (rad/mm)."""
    return -K_FIELD * bz * np.asarray(qop, float)


def h_per_qop_rows(bz: float | np.ndarray, n: int) -> np.ndarray:
    """``-K Bz`` per row (n,): the turning rate per unit q/p of each row's field (``bz`` one
    field for all rows or one per row, ``taas.tracking.field``)."""
    return np.ascontiguousarray(np.broadcast_to(-K_FIELD * np.asarray(bz, float), (n,)))


def helix_at(free: np.ndarray, s: np.ndarray, bz: float | np.ndarray,
             mass: float = PION_MASS) -> np.ndarray:
    """Free parameters after a path length ``s`` (mm, may be negative) along the helix in the
    field ``bz`` (T; one for all rows or one per row).

    A numba loop per row: the CKF and the fitter call this on a few thousand rows at a time,
    where a dozen numpy temporaries per call cost more than the arithmetic."""
    free = np.ascontiguousarray(free, dtype=float)
    s = np.broadcast_to(np.asarray(s, float), (len(free),))
    out = np.empty_like(free)
    _helix_rows(free, np.ascontiguousarray(s), h_per_qop_rows(bz, len(free)), mass, out)
    return out


@numba.njit(cache=True)
def _helix_rows(free: np.ndarray, s: np.ndarray, h_per_qop: np.ndarray, mass: float,
                out: np.ndarray) -> None:
    """``helix_at`` row by row into ``out``."""
    for i in range(len(free)):
        state_at(free[i], s[i], h_per_qop[i], mass, out[i])


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


def intersect_plane(free: np.ndarray, center: np.ndarray, normal: np.ndarray,
                    bz: float | np.ndarray, *,
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
    _intersect_plane_rows(free, center, normal, h_per_qop_rows(bz, n), tol, max_iter, s, ok)
    return s, ok


@numba.njit(cache=True)
def _intersect_plane_rows(free: np.ndarray, center: np.ndarray, normal: np.ndarray,
                          h_per_qop: np.ndarray, tol: float, max_iter: int, s_out: np.ndarray,
                          ok_out: np.ndarray) -> None:
    """``intersect_plane`` for every row: straight-line start, then Newton on the helix."""
    for i in range(len(free)):
        s_out[i], ok_out[i] = plane_path(free[i, 0], free[i, 1], free[i, 2], free[i, 4],
                                         free[i, 5], free[i, 6], h_per_qop[i] * free[i, QOP],
                                         center[i, 0], center[i, 1], center[i, 2],
                                         normal[i, 0], normal[i, 1], normal[i, 2], tol, max_iter)


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
