"""Track parameter sets and conversions between them (ACTS conventions).

* **Bound** parameters on a plane (a module): ``(loc0, loc1, phi, theta, q/p, t)``; loc0/loc1
  are the local u/v of the crossing point (mm), phi/theta the azimuth and polar angle of the
  momentum direction in the global frame, q/p in e/GeV, t in ns. A module maps local to global
  as ``x = centre + R @ (u, v, w)`` with w along the normal (``taas.detector``).
* **Free** parameters: ``(x, y, z, t, Tx, Ty, Tz, q/p)`` (``taas.tracking.helix``).
* **Perigee** parameters w.r.t. the beam line (the z axis): ``(d0, z0, phi, theta, q/p, t)`` at
  the point of closest approach (PCA) in the transverse plane. ACTS sign convention: the PCA is
  ``(-d0 sin(phi), d0 cos(phi), z0)``, i.e. ``d0 = (z_hat x T) . x_PCA / |T_T|`` is positive when
  the beam line lies to the right of the track's transverse direction.

All functions are vectorised over a leading track axis. Jacobians of bound<->free follow
ACTS ``transformBoundToFreeParameters`` / ``freeToBoundJacobian`` for plane surfaces.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from taas.errors import InputError
from taas.tracking import helix
from taas.tracking.batched import constants as _constants
from taas.tracking.batched.flavours import NUMBA as _formulas

#: Bound (and perigee) parameter slots.
LOC0 = _constants.LOC0
LOC1 = _constants.LOC1
PHI = _constants.PHI
THETA = _constants.THETA
QOP = _constants.QOP
TIME = _constants.TIME

D0, Z0 = LOC0, LOC1


def direction(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) from azimuth and polar angle."""
    phi, theta = np.asarray(phi, float), np.asarray(theta, float)
    st = np.sin(theta)
    return np.stack([np.cos(phi) * st, np.sin(phi) * st, np.cos(theta)], axis=-1)


def direction_angles(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi, theta) of direction vectors (..., 3); the vectors need not be normalised."""
    t = np.asarray(t, float)
    return np.arctan2(t[..., 1], t[..., 0]), np.arctan2(np.hypot(t[..., 0], t[..., 1]), t[..., 2])


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Angles mapped to [-pi, pi)."""
    return (np.asarray(phi) + np.pi) % (2 * np.pi) - np.pi


def bound_to_free(params: np.ndarray, center: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Free vectors (n, 8) of bound parameters on planes (centre (n, 3), rotation (n, 3, 3))."""
    params = np.asarray(params, float)
    free = np.empty((len(params), 8))
    free[:, helix.POS] = (np.asarray(center, float)
                          + np.einsum("nij,nj->ni", rotation[:, :, :2], params[:, :2]))
    free[:, helix.TIME] = params[:, TIME]
    free[:, helix.DIR] = direction(params[:, PHI], params[:, THETA])
    free[:, helix.QOP] = params[:, QOP]
    return free


def free_to_bound(free: np.ndarray, center: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Bound parameters (n, 6) of free vectors on planes; the position's w is dropped.

    The caller is responsible for the position lying on the plane (after an intersection).
    """
    free = np.asarray(free, float)
    params = np.empty((len(free), 6))
    local = np.einsum("nji,nj->ni", rotation, free[:, helix.POS] - center)
    params[:, :2] = local[:, :2]
    params[:, PHI], params[:, THETA] = direction_angles(free[:, helix.DIR])
    params[:, QOP] = free[:, helix.QOP]
    params[:, TIME] = free[:, helix.TIME]
    return params


#: d(free)/d(bound) (8, 6) and d(bound)/d(free) (6, 8) on a plane, one track: the numba flavour
#: of ``taas.tracking.batched.formulas``.
bound_to_free_matrix = _formulas.bound_to_free_matrix
free_to_bound_matrix = _formulas.free_to_bound_matrix


# --- perigee ---------------------------------------------------------------------------------
def perigee_to_free(perigee: np.ndarray) -> np.ndarray:
    """Free vectors (n, 8) at the perigee point of perigee parameters."""
    perigee = np.asarray(perigee, float)
    phi = perigee[:, PHI]
    free = np.empty((len(perigee), 8))
    free[:, 0] = -perigee[:, D0] * np.sin(phi)
    free[:, 1] = perigee[:, D0] * np.cos(phi)
    free[:, 2] = perigee[:, Z0]
    free[:, helix.TIME] = perigee[:, TIME]
    free[:, helix.DIR] = direction(phi, perigee[:, THETA])
    free[:, helix.QOP] = perigee[:, QOP]
    return free


def free_to_perigee(free: np.ndarray, bz: float, mass: float = helix.PION_MASS) -> np.ndarray:
    """Perigee parameters (n, 6): follow the helix to the transverse PCA with the z axis.

    Raises ``InputError`` where no PCA is found (a track parallel to the beam line).
    """
    s, ok = helix.path_to_beamline(free, bz)
    if not ok.all():
        raise InputError(f"no point of closest approach to the beam line for "
                         f"{int((~ok).sum())} of {len(ok)} tracks")
    pca = helix.helix_at(free, s, bz, mass)
    phi, theta = direction_angles(pca[:, helix.DIR])
    out = np.empty((len(pca), 6))
    out[:, D0] = -pca[:, 0] * np.sin(phi) + pca[:, 1] * np.cos(phi)
    out[:, Z0] = pca[:, 2]
    out[:, PHI], out[:, THETA] = phi, theta
    out[:, QOP] = pca[:, helix.QOP]
    out[:, TIME] = pca[:, helix.TIME]
    return out


def numerical_jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       steps: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian (n, m, k) of a vectorised map (n, k) -> (n, m).

    ``steps`` (n, k) or (k,) are absolute steps; angle differences in the output are not
    wrapped, so keep steps small against the distance to any branch cut.
    """
    x = np.asarray(x, float)
    n, k = x.shape
    steps = np.broadcast_to(np.asarray(steps, float), (n, k))
    shifted = np.repeat(x[None], 2 * k, axis=0)  # (2k, n, k)
    for j in range(k):
        shifted[2 * j, :, j] += steps[:, j]
        shifted[2 * j + 1, :, j] -= steps[:, j]
    values = func(shifted.reshape(2 * k * n, k)).reshape(2 * k, n, -1)
    diff = (values[0::2] - values[1::2]) / (2 * steps.T[:, :, None])  # (k, n, m)
    return np.transpose(diff, (1, 2, 0))


def _perigee_steps(params: np.ndarray) -> np.ndarray:
    """Finite-difference steps for bound parameters: 1 um, 1e-6 rad, 1e-6 relative q/p."""
    steps = np.empty_like(params)
    steps[:, :2] = 1e-3
    steps[:, PHI:QOP] = 1e-6
    steps[:, QOP] = 1e-6 * np.maximum(np.abs(params[:, QOP]), 1e-3)
    steps[:, TIME] = 1e-3
    return steps


def bound_to_perigee(params: np.ndarray, cov: np.ndarray | None, center: np.ndarray,
                     rotation: np.ndarray, *, bz: float, mass: float = helix.PION_MASS,
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Perigee parameters (and covariance) of bound parameters on planes.

    The covariance is transported with a central-difference Jacobian of the full map (plane ->
    helix -> PCA); this is a reporting helper, not in any hot loop, so the extra seven helix
    solutions per track are cheap, and a numerical Jacobian has no frame algebra to get wrong.
    """
    params = np.asarray(params, float)
    perigee = free_to_perigee(bound_to_free(params, center, rotation), bz, mass)
    if cov is None:
        return perigee, None
    center_r = np.tile(np.asarray(center, float), (12, 1))
    rotation_r = np.tile(np.asarray(rotation, float), (12, 1, 1))

    def func(x: np.ndarray) -> np.ndarray:
        out = free_to_perigee(bound_to_free(x, center_r, rotation_r), bz, mass)
        # keep phi continuous around the central value
        ref = np.tile(perigee[:, PHI], 12)
        out[:, PHI] = ref + wrap_phi(out[:, PHI] - ref)
        return out

    jac = numerical_jacobian(func, params, _perigee_steps(params))
    return perigee, jac @ np.asarray(cov, float) @ np.swapaxes(jac, 1, 2)
