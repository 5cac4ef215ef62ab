"""Track parameter estimation from space points: the starting point of fits and of the CKF.

A helix through three or more global points ordered along the track (as in ACTS'
``estimateTrackParamsFromSeed``, here in closed form):

* transverse plane: the signed curvature kappa of the circle through the first, middle and last
  points (Menger curvature, ``2 (b - a) x (c - b) / (|b - a| |c - b| |c - a|)``, positive
  counter-clockwise), which is exact for three points and stays finite for straight tracks;
  the direction at the first point is the chord to the middle point turned back by half the
  arc's turning angle, ``asin(kappa chord / 2)``;
* longitudinal: z against transverse arc length from the first point, a least-squares line
  through all points, slope ``cot(theta)``;
* momentum: ``q/p = -kappa sin(theta) / (K Bz)`` (``taas.tracking.helix`` sign conventions).

Only three points fix the curvature, so extra points refine theta but not q/p; the Kalman fit
that follows uses them all. The covariance returned is deliberately loose (``loose_covariance``):
it is a prior for a fit, and must not pull the fit towards the estimate.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from taas.tracking import helix
from taas.tracking.parameters import LOC0, LOC1, PHI, QOP, THETA, TIME


def _arcsin_ratio(x: Any, xp: ModuleType = np) -> Any:
    """asin(x) / x, 1 at x = 0; x clipped to [-1, 1]."""
    x = xp.clip(x, -1.0, 1.0)
    small = xp.abs(x) < 1e-4
    safe = xp.where(small, 1.0, x)
    return xp.where(small, 1.0 + x * x / 6, xp.arcsin(safe) / safe)


def loose_covariance(params: np.ndarray, sigma_loc: float = 1.0, sigma_angle: float = 0.05,
                     sigma_time: float = 1.0) -> np.ndarray:
    """Diagonal prior (N, 6, 6): 1 mm, 50 mrad, sigma(q/p) = |q/p| + 0.1 /GeV, 1 ns.

    Loose against what the measurements determine (10-100 um, ~1 mrad, a few % in q/p) so the
    prior's weight in the fit is ~1e-4, yet tight enough to keep the first linearisations sane.
    """
    params = np.asarray(params, float)
    cov = np.zeros((len(params), 6, 6))
    cov[:, LOC0, LOC0] = cov[:, LOC1, LOC1] = sigma_loc**2
    cov[:, PHI, PHI] = cov[:, THETA, THETA] = sigma_angle**2
    cov[:, QOP, QOP] = (np.abs(params[:, QOP]) + 0.1) ** 2
    cov[:, TIME, TIME] = sigma_time**2
    return cov


def estimate_parameters(xyz: np.ndarray, center: np.ndarray, rotation: np.ndarray, bz: float,
                        time: np.ndarray | float | None = None,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Bound parameters on the first point's module and a loose covariance.

    ``xyz`` is (N, k, 3) with k >= 3 points per track ordered along it; ``center`` (N, 3) and
    ``rotation`` (N, 3, 3) describe the first point's module. ``time`` defaults to the flight
    time from the origin at the speed of light. Raises ``ValueError`` for ``bz == 0`` (no
    momentum from curvature).
    """
    params = helix_parameters(xyz, center, rotation, bz, time)
    return params, loose_covariance(params)


def helix_parameters(xyz: Any, center: Any, rotation: Any, bz: float,
                     time: Any | float | None = None, *, xp: ModuleType = np) -> Any:
    """``estimate_parameters``' bound parameters (N, 6), in the array namespace ``xp``: numpy,
    or torch with tensors on any device (the GPU bridge, ``traccc_bridge.bridge``). Written
    with the functions both spell alike, so one text serves both."""
    xyz = xp.asarray(xyz, dtype=xp.float64)
    if xyz.ndim != 3 or xyz.shape[1] < 3 or xyz.shape[2] != 3:
        raise ValueError(f"need (N, k >= 3, 3) points, got shape {tuple(xyz.shape)}")
    if bz == 0:
        raise ValueError("momentum estimation needs a non-zero field")
    a, b, c = xyz[:, 0, :2], xyz[:, xyz.shape[1] // 2, :2], xyz[:, -1, :2]
    ab, bc, ac = b - a, c - b, c - a
    cross = ab[:, 0] * bc[:, 1] - ab[:, 1] * bc[:, 0]
    chord_ab = xp.linalg.norm(ab, axis=1)
    norms = chord_ab * xp.linalg.norm(bc, axis=1) * xp.linalg.norm(ac, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = xp.where(norms > 0, 2 * cross / norms, 0.0)
    phi = xp.arctan2(ab[:, 1], ab[:, 0]) - xp.arcsin(xp.clip(kappa * chord_ab / 2, -1, 1))

    # transverse arc length of every point from the first, then z = z_a + cot(theta) * s
    chords = xp.linalg.norm(xyz[:, :, :2] - a[:, None], axis=2)
    arcs = chords * _arcsin_ratio(kappa[:, None] * chords / 2, xp)
    z = xyz[:, :, 2]
    s_c = arcs - arcs.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cot = xp.sum(s_c * (z - z.mean(axis=1, keepdims=True)), axis=1) / xp.sum(s_c**2, axis=1)
    theta = xp.arctan2(xp.ones_like(cot), cot)

    local = xp.einsum("nji,nj->ni", rotation, xyz[:, 0] - center)
    columns = {
        LOC0: local[:, 0], LOC1: local[:, 1],
        PHI: (phi + math.pi) % (2 * math.pi) - math.pi,  # wrap_phi, namespace-free
        THETA: theta,
        QOP: -kappa * xp.sin(theta) / (helix.K_FIELD * bz),
        TIME: (xp.linalg.norm(xyz[:, 0], axis=1) / helix.C_MM_PER_NS if time is None
               else xp.zeros_like(theta) + time),
    }
    return xp.stack([columns[i] for i in range(6)], axis=1)
