"""Material effects: multiple scattering and mean energy loss at modules and passive surfaces.

Each module is a silicon slab of its table thickness (``X0_SILICON``); a track crossing it at
incidence cosine ``c = |n . T|`` traverses ``x = thickness / c``. The Highland formula
(PDG RPP 2024, "Passage of particles through matter", eq. 34.16)

    theta0 = 13.6 MeV / (beta c p) * z * sqrt(x / X0) * (1 + 0.038 ln(x z^2 / (X0 beta^2)))

gives the width of the projected scattering angle; both projections are independent, so the
direction picks up variance theta0^2 in theta and theta0^2 / sin^2(theta) in phi (a kink of
angle a perpendicular to T in the transverse direction changes phi by a / sin(theta)). Unit
charge (z = 1) and the fitter's mass hypothesis give beta.

The whole kink is placed at the module's mid-plane, after the measurement there (the thin-slab
model of ACTS' surface material with full post-update).

Passive material (``PassiveMaterial``: beam pipe, support tube, the per-layer material slabs of
the ACTS Generic detector, see ``taas.detector.material``) sits on cylinders about the beam line
and on discs normal to it. Where a propagation step crosses one, its scattering noise is added
at the crossing point (on the plane tangent to the surface there) and transported with the
helix Jacobian to the step's destination: a kink at a distance L before a module also moves the
local position there by ~L theta0, which noise added on the module alone would miss.

Mean ionisation energy loss (Bethe formula, PDG RPP 2024 eq. 34.5, with the high-energy density
correction eq. 34.6, as ACTS ``computeEnergyLossBethe``) shifts |q/p| after every slab, and its
straggling (Landau FWHM 4 xi as a Gaussian sigma, as ACTS ``computeEnergyLossLandauSigma``) adds
q/p variance. A Generic-detector track loses ~5-10 MeV through its ~2-4 % X0 layer slabs: 1 % of
a 1 GeV track's momentum, several times its q/p resolution. Electrons, whose bremsstrahlung
this model would miss, are out of scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from taas.tracking import helix
from taas.tracking.parameters import PHI, QOP, THETA, TIME
from taas.tracking.propagation import propagate_rows

if TYPE_CHECKING:
    from taas.detector.detector import Detector
    from taas.detector.material import MaterialTable

#: Radiation length of silicon, mm (PDG atomic and nuclear properties: 9.370 cm).
X0_SILICON = 93.7
#: Highland constant, GeV.
HIGHLAND_GEV = 0.0136


def highland_theta0(qop: np.ndarray, x_over_x0: np.ndarray,
                    mass: float = helix.PION_MASS) -> np.ndarray:
    """Projected r.m.s. scattering angle (rad) of a unit-charge particle; 0 where x = 0."""
    qop, xx0 = np.broadcast_arrays(np.asarray(qop, float), np.asarray(x_over_x0, float))
    out = np.empty(qop.shape)
    _theta0_rows(np.ascontiguousarray(qop).reshape(-1), np.ascontiguousarray(xx0).reshape(-1),
                 mass, out.reshape(-1))
    return out


@numba.njit(cache=True)
def _theta0_rows(qop: np.ndarray, x_over_x0: np.ndarray, mass: float, out: np.ndarray) -> None:
    for i in range(len(out)):
        out[i] = theta0_of(qop[i], x_over_x0[i], mass)


@numba.njit(cache=True)
def theta0_of(qop: float, x_over_x0: float, mass: float) -> float:
    """``highland_theta0`` of one particle and slab (PDG eq. 34.15, with beta)."""
    if not x_over_x0 > 0:
        return 0.0
    qop = abs(qop)
    beta2 = 1.0 / (1.0 + (mass * qop) ** 2)  # beta^2 = p^2 / (p^2 + m^2)
    log_term = max(1.0 + 0.038 * np.log(x_over_x0 / beta2), 0.0)
    return HIGHLAND_GEV * qop / np.sqrt(beta2) * np.sqrt(x_over_x0) * log_term


def scattering_variances(params: np.ndarray, cos_incidence: np.ndarray, thickness: np.ndarray,
                         *, x0: float = X0_SILICON, mass: float = helix.PION_MASS,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Variances added to (phi, theta) of bound parameters crossing a module.

    ``cos_incidence`` is |normal . direction|; the path in the slab is thickness / cos.
    """
    params = np.asarray(params, float)
    cos_inc = np.maximum(np.abs(np.asarray(cos_incidence, float)), 1e-6)
    theta0 = highland_theta0(params[:, QOP], np.asarray(thickness, float) / cos_inc / x0, mass)
    var = theta0**2
    return var / np.sin(params[:, THETA]) ** 2, var


def add_scattering(params: np.ndarray, cov: np.ndarray, cos_incidence: np.ndarray,
                   thickness: np.ndarray, *, x0: float = X0_SILICON,
                   mass: float = helix.PION_MASS) -> np.ndarray:
    """Covariance (n, 6, 6) with the module's scattering noise added (a new array)."""
    var_phi, var_theta = scattering_variances(params, cos_incidence, thickness, x0=x0,
                                               mass=mass)
    out = np.array(cov, float)
    out[:, PHI, PHI] += var_phi
    out[:, THETA, THETA] += var_theta
    return out


# --- energy loss -----------------------------------------------------------------------------
#: Bethe constant K = 4 pi N_A r_e^2 m_e c^2: 0.307075 MeV cm^2 / mol, in GeV mm^2 / mol.
BETHE_K = 0.307075e-3 * 100.0
#: Electron mass, GeV.
ELECTRON_MASS = 0.51099895e-3
#: Plasma energy constant: hbar omega_p = 28.816 eV sqrt(rho <Z/A> [g/cm^3]), in GeV.
PLASMA_GEV = 28.816e-9


def energy_loss(qop: np.ndarray, path: np.ndarray, molar_e_rho: np.ndarray,
                excitation: np.ndarray, mass: float = helix.PION_MASS,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Mean energy loss (GeV) and q/p straggling sigma along ``path`` mm of a material.

    ``molar_e_rho`` is the electron density (mol/mm^3) and ``excitation`` the mean excitation
    energy I (GeV), as ACTS stores them. Zero where the path is zero or q/p is not finite.
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, float)
                                   for a in (qop, path, molar_e_rho, excitation)))
    mean, sigma = np.empty(arrays[0].shape), np.empty(arrays[0].shape)
    _energy_loss_rows(*(np.ascontiguousarray(a).reshape(-1) for a in arrays), mass,
                      mean.reshape(-1), sigma.reshape(-1))
    return mean, sigma


@numba.njit(cache=True)
def _energy_loss_rows(qop: np.ndarray, path: np.ndarray, molar_e_rho: np.ndarray,
                      excitation: np.ndarray, mass: float, mean: np.ndarray,
                      sigma: np.ndarray) -> None:
    for i in range(len(mean)):
        mean[i], sigma[i] = energy_loss_of(qop[i], path[i], molar_e_rho[i], excitation[i], mass)


@numba.njit(cache=True)
def energy_loss_of(qop: float, path: float, molar_e_rho: float, excitation: float,
                   mass: float) -> tuple[float, float]:
    """``energy_loss`` of one particle and path: Bethe mean loss with the density effect and
    the Landau width (FWHM 4 xi) as a Gaussian q/p sigma."""
    qop = abs(qop)
    if not (path > 0 and qop > 0 and np.isfinite(qop)):
        return 0.0, 0.0
    bg = 1.0 / qop / mass
    gamma = np.sqrt(1.0 + bg * bg)
    beta2 = bg * bg / (1.0 + bg * bg)
    xi = 0.5 * BETHE_K * molar_e_rho * path / beta2
    ratio = ELECTRON_MASS / mass
    wmax = 2 * ELECTRON_MASS * bg * bg / (1.0 + 2 * gamma * ratio + ratio * ratio)
    plasma = PLASMA_GEV * np.sqrt(1000.0 * molar_e_rho)  # ne * 1000: mol/cm^3 = rho Z/A
    delta_half = max(np.log(plasma / excitation) + np.log(bg) - 0.5, 0.0)
    running = np.log(2 * ELECTRON_MASS * bg * bg * wmax / (excitation * excitation))
    mean = 2 * xi * (0.5 * running - beta2 - delta_half)
    if not (np.isfinite(mean) and mean > 0):
        return 0.0, 0.0
    sigma_e = 4 * xi / (2 * np.sqrt(2 * np.log(2)))
    return mean, sigma_e * qop * qop / np.sqrt(beta2)


def apply_energy_loss(qop: np.ndarray, de: np.ndarray, mass: float = helix.PION_MASS,
                      sign: float = 1.0) -> np.ndarray:
    """q/p after losing (``sign`` = 1) or, backwards, regaining (-1) energy ``de`` (GeV)."""
    qop = np.asarray(qop, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 / np.abs(qop)
        energy = np.sqrt(p**2 + mass**2) - sign * de
        p_new = np.sqrt(np.maximum(energy**2 - mass**2, 1e-12))
    return np.where(de > 0, np.sign(qop) / p_new, qop)


def slab_noise(params: np.ndarray, cos_incidence: np.ndarray, slab: np.ndarray,
               mass: float = helix.PION_MASS) -> tuple[np.ndarray, np.ndarray]:
    """Noise (n, 6, 6) and mean energy loss (n,) GeV of bound states crossing slabs.

    ``slab`` is (n, 4): ``(thickness mm, x0 mm, molar_e_rho, excitation)`` per crossing; the
    path is thickness / |cos incidence|.
    """
    params = np.asarray(params, float)
    slab = np.asarray(slab, float)
    cos_inc = np.maximum(np.abs(np.asarray(cos_incidence, float)), 1e-6)
    path = slab[:, 0] / cos_inc
    theta0 = highland_theta0(params[:, QOP], path / slab[:, 1], mass)
    de, sigma_qop = energy_loss(params[:, QOP], path, slab[:, 2], slab[:, 3], mass)
    noise = np.zeros((len(params), 6, 6))
    noise[:, PHI, PHI] = theta0**2 / np.sin(params[:, THETA]) ** 2
    noise[:, THETA, THETA] = theta0**2
    noise[:, QOP, QOP] = sigma_qop**2
    return noise, de


class PassiveMaterial:
    """Cylinders about and discs normal to the beam line carrying material slabs.

    Built from a ``taas.detector.material.MaterialTable`` (its non-module rows); ``crossings``
    finds where helix segments cross them.
    """

    def __init__(self, table: MaterialTable | None) -> None:
        from taas.detector.material import CYLINDER, DISC

        empty = np.zeros(0)
        cyl = table.rows(CYLINDER) if table is not None else None
        disc = table.rows(DISC) if table is not None else None
        self.cyl_r = cyl["radius"] if cyl else empty
        self.cyl_zmin = cyl["zmin"] if cyl else empty
        self.cyl_zmax = cyl["zmax"] if cyl else empty
        self.disc_z = disc["z"] if disc else empty
        self.disc_rmin = disc["rmin"] if disc else empty
        self.disc_rmax = disc["rmax"] if disc else empty
        cols = ("thickness", "x0", "molar_e_rho", "excitation")
        self.cyl_slab = np.stack([cyl[c] for c in cols], 1) if cyl else np.zeros((0, 4))
        self.disc_slab = np.stack([disc[c] for c in cols], 1) if disc else np.zeros((0, 4))

    def __len__(self) -> int:
        return len(self.cyl_r) + len(self.disc_z)

    def crossings(self, free: np.ndarray, s_end: np.ndarray, bz: float,
                  mass: float = helix.PION_MASS,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Crossings of the segments ``s`` in (0, s_end) (or (s_end, 0) backwards).

        Returns ``(track, free_at, normal, slab)``: the segment row of each crossing, the free
        vector there (n, 8), the surface normal (n, 3) and its slab (n, 4); disc crossings
        first, then cylinder crossings, each by segment then surface. Cylinders are assumed
        crossed at most once per segment (true for tracks not turning back in r). One numba
        pass over the segments (``_crossing_rows``): the CKF asks for every predicted pair.
        """
        free = np.ascontiguousarray(free, dtype=float)
        s_end = np.ascontiguousarray(np.broadcast_to(np.asarray(s_end, float), (len(free),)))
        limit = len(free) * len(self)
        track = np.empty(limit, np.int64)
        surface = np.empty(limit, np.int64)
        at = np.empty((limit, 8))
        n = _crossing_rows(free, s_end, -helix.K_FIELD * bz, mass, self.disc_z, self.disc_rmin,
                           self.disc_rmax, self.cyl_r, self.cyl_zmin, self.cyl_zmax, track,
                           surface, at)
        track, surface, at = track[:n], surface[:n], at[:n]
        normal = np.zeros((n, 3))
        disc = surface < len(self.disc_z)
        normal[disc, 2] = 1.0
        radial = at[~disc, 0:2]
        normal[~disc, 0:2] = radial / np.linalg.norm(radial, axis=1)[:, None]
        slab = np.concatenate([self.disc_slab, self.cyl_slab])[surface]
        return track, at, normal, slab

    def noise_at(self, free: np.ndarray, s_end: np.ndarray, dst_center: np.ndarray,
                 dst_rotation: np.ndarray, *, bz: float, mass: float = helix.PION_MASS,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Noise (n, 6, 6) on the destination planes and mean energy loss (n,) GeV of segments.

        Each crossing's scattering and straggling noise is added at the crossing, in the bound
        frame of the plane tangent to the surface there, and transported to the destination
        plane with the helix Jacobian (``taas.tracking.propagation``).
        """
        n = len(free)
        noise, loss = np.zeros((n, 6, 6)), np.zeros(n)
        if not len(self):
            return noise, loss
        t, at, normal, slab = self.crossings(free, s_end, bz, mass)
        if not len(t):
            return noise, loss
        noise_rows(t, at, normal, np.ascontiguousarray(slab, dtype=float),
                   np.ascontiguousarray(dst_center, dtype=float),
                   np.ascontiguousarray(dst_rotation, dtype=float), -helix.K_FIELD * bz, mass,
                   noise.reshape(n, 36), loss)
        return noise, loss


@numba.njit(cache=True)
def noise_rows(track: np.ndarray, at: np.ndarray, normal: np.ndarray, slab: np.ndarray,
               dst_center: np.ndarray, dst_rotation: np.ndarray, h_per_qop: float, mass: float,
               noise: np.ndarray, loss: np.ndarray) -> None:
    """``PassiveMaterial.noise_at``'s sums, one crossing at a time: the slab's scattering and
    straggling in the bound frame of the plane tangent to the surface there (``tangent_frame``),
    transported to the segment's destination plane with the propagation Jacobian. ``noise``
    is (n, 36); crossings whose propagation fails add no noise (their energy loss still
    counts)."""
    params = np.zeros((1, 6))
    src_center = np.empty((1, 3))
    src_rot = np.empty((1, 3, 3))
    jac = np.empty((1, 6, 6))
    out, path, cos_out = np.empty((1, 6)), np.empty(1), np.empty(1)
    ok = np.empty(1, np.bool_)
    for k in range(len(track)):
        t = track[k]
        nx, ny, nz = normal[k, 0], normal[k, 1], normal[k, 2]
        _tangent_frame_into(src_rot[0], nx, ny, nz)
        src_center[0] = at[k, 0:3]
        tx, ty, tz = at[k, 4], at[k, 5], at[k, 6]
        theta = np.arctan2(np.hypot(tx, ty), tz)
        params[0, PHI], params[0, THETA] = np.arctan2(ty, tx), theta
        params[0, QOP], params[0, TIME] = at[k, helix.QOP], at[k, helix.TIME]
        cos_inc = max(abs(nx * tx + ny * ty + nz * tz), 1e-6)
        in_slab = slab[k, 0] / cos_inc
        theta0 = theta0_of(at[k, helix.QOP], in_slab / slab[k, 1], mass)
        de, sigma_qop = energy_loss_of(at[k, helix.QOP], in_slab, slab[k, 2], slab[k, 3], mass)
        loss[t] += de
        propagate_rows(params, src_center, src_rot, dst_center[t:t + 1],
                       dst_rotation[t:t + 1], h_per_qop, mass, jac, out, path, cos_out, ok)
        if not ok[0]:
            continue
        for r in range(6):
            for c in range(6):
                if not np.isfinite(jac[0, r, c]):
                    jac[0, r, c] = 0.0
        var = ((PHI, theta0 * theta0 / np.sin(theta) ** 2), (THETA, theta0 * theta0),
               (QOP, sigma_qop * sigma_qop))
        for r in range(6):
            for c in range(6):
                acc = 0.0
                for j, q in var:
                    acc += jac[0, r, j] * q * jac[0, c, j]
                noise[t, r * 6 + c] += acc


@numba.njit(cache=True)
def _tangent_frame_into(rot: np.ndarray, nx: float, ny: float, nz: float) -> None:
    """One ``tangent_frame`` rotation, written into ``rot`` (3, 3)."""
    hx, hy, hz = (0.0, 0.0, 1.0) if abs(nz) < 0.9 else (1.0, 0.0, 0.0)
    ux, uy, uz = hy * nz - hz * ny, hz * nx - hx * nz, hx * ny - hy * nx
    norm = np.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / norm, uy / norm, uz / norm
    rot[0, 0], rot[1, 0], rot[2, 0] = ux, uy, uz
    rot[0, 1], rot[1, 1], rot[2, 1] = ny * uz - nz * uy, nz * ux - nx * uz, nx * uy - ny * ux
    rot[0, 2], rot[1, 2], rot[2, 2] = nx, ny, nz


@numba.njit(cache=True)
def add_rows(out: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """out[rows[k]] += values[k], in order (``np.add.at``'s sums, without its overhead)."""
    for k in range(len(rows)):
        for j in range(values.shape[1]):
            out[rows[k], j] += values[k, j]


def tangent_frame(normal: np.ndarray) -> np.ndarray:
    """Rotations (n, 3, 3) with the given unit normals as third column (any u, v)."""
    normal = np.ascontiguousarray(normal, dtype=float)
    out = np.empty((len(normal), 3, 3))
    _tangent_frames(normal, out)
    return out


@numba.njit(cache=True)
def _tangent_frames(normal: np.ndarray, out: np.ndarray) -> None:
    for i in range(len(normal)):
        _tangent_frame_into(out[i], normal[i, 0], normal[i, 1], normal[i, 2])


@numba.njit(cache=True)
def _crossing_rows(free: np.ndarray, s_end: np.ndarray, h_per_qop: float, mass: float,
                   disc_z: np.ndarray, disc_rmin: np.ndarray, disc_rmax: np.ndarray,
                   cyl_r: np.ndarray, cyl_zmin: np.ndarray, cyl_zmax: np.ndarray,
                   track: np.ndarray, surface: np.ndarray, at: np.ndarray) -> int:
    """Fill (track, surface, free state) of every crossing, discs first; returns the count.
    Surfaces number the discs, then the cylinders."""
    n = 0
    for i in range(len(free)):
        lo, hi = min(s_end[i], 0.0), max(s_end[i], 0.0)
        for d in range(len(disc_z)):
            s = (disc_z[d] - free[i, 2]) / free[i, 6] if free[i, 6] != 0.0 else np.nan
            if not (np.isfinite(s) and lo < s < hi):
                continue
            helix.state_at(free[i], s, h_per_qop, mass, at[n])
            r = np.hypot(at[n, 0], at[n, 1])
            if disc_rmin[d] <= r <= disc_rmax[d]:
                track[n], surface[n] = i, d
                n += 1
    for i in range(len(free)):
        start_r = np.hypot(free[i, 0], free[i, 1])
        x, y, _z, _tx, _ty = helix.point_on_helix(free[i, 0], free[i, 1], free[i, 2], free[i, 4],
                                                  free[i, 5], free[i, 6],
                                                  h_per_qop * free[i, helix.QOP], s_end[i])
        end_r = np.hypot(x, y)
        r_lo, r_hi = min(start_r, end_r), max(start_r, end_r)
        for c in range(len(cyl_r)):
            if not r_lo < cyl_r[c] < r_hi:
                continue
            s = _segment_cylinder_path(free[i], cyl_r[c], s_end[i], h_per_qop)
            if not np.isfinite(s):
                continue
            helix.state_at(free[i], s, h_per_qop, mass, at[n])
            if cyl_zmin[c] <= at[n, 2] <= cyl_zmax[c]:
                track[n], surface[n] = i, len(disc_z) + c
                n += 1
    return n


@numba.njit(cache=True)
def _segment_cylinder_path(free: np.ndarray, radius: float, s_end: float, h_per_qop: float
                           ) -> float:
    """Path from ``free`` to its first crossing of r = ``radius`` towards ``s_end`` (negative:
    backwards), nan when it lies beyond ``s_end``. A backward path is a forward one along the
    reversed helix (direction and turning rate negated)."""
    h = h_per_qop * free[helix.QOP]
    sign = 1.0 if s_end >= 0.0 else -1.0
    s = sign * helix.cylinder_path(free[0], free[1], sign * free[4], sign * free[5], sign * h,
                                   radius, 0.0)
    return s if abs(s) <= abs(s_end) else np.nan


def material_model(detector: Detector) -> tuple[np.ndarray | None, PassiveMaterial | None]:
    """Per-module slabs (n_modules, 4) and passive surfaces of ``detector``, cached on it.

    Both are None when only the silicon-only fallback exists
    (``taas.detector.material.material_for``): the fit then keeps its legacy model, silicon of
    the module thickness in units of the configured X0, scattering only.
    """
    cached = getattr(detector, "_taas_material_model", None)
    if cached is not None:
        return cached
    from taas.detector.material import material_for

    table = material_for(detector)
    model: tuple[np.ndarray | None, PassiveMaterial | None] = (None, None)
    if table.source != "silicon-only":
        model = (table.module_slabs(detector), PassiveMaterial(table))
    detector._taas_material_model = model  # type: ignore[attr-defined]
    return model
