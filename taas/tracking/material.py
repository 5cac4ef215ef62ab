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
q/p variance. Real silicon (electron density 1.16e-3 mol/mm^3) would take ~0.4 MeV per mm from
a 1 GeV pion; the ACTS Generic detector, as pyacts stores its material (``molar_e_rho``
1.16e-6 mol/mm^3, see ``taas.detector.material``), gives a thousandth of that. ACTS'
KalmanFitter loses that little too (its q/p agrees with taas' to 0.01 sigma), and so does its
Fatras simulation, judging by the unbiased q/p pulls against truth (mean < 0.01), so taas
follows the table. Electrons, whose bremsstrahlung this model would miss, are out of scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from taas.tracking import helix
from taas.tracking.batched import constants as _constants
from taas.tracking.batched.flavours import NUMBA as _formulas
from taas.tracking.parameters import PHI, QOP, THETA

#: Highland constant, GeV.
HIGHLAND_GEV = _constants.HIGHLAND_GEV
#: Bethe constant K = 4 pi N_A r_e^2 m_e c^2, in GeV mm^2 / mol.
BETHE_K = _constants.BETHE_K
#: Electron mass, GeV.
ELECTRON_MASS = _constants.ELECTRON_MASS
#: Plasma energy constant (hbar omega_p per sqrt(rho <Z/A> [g/cm^3])), GeV.
PLASMA_GEV = _constants.PLASMA_GEV

if TYPE_CHECKING:
    from taas.detector.detector import Detector
    from taas.detector.material import MaterialTable

#: Radiation length of silicon, mm (PDG atomic and nuclear properties: 9.370 cm).
X0_SILICON = 93.7


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


#: One track's Highland angle and Bethe loss: the numba flavour of
#: ``taas.tracking.batched.formulas`` (``highland_theta0``, ``energy_loss``).
theta0_of = _formulas.highland_theta0
energy_loss_of = _formulas.energy_loss


def scattering_variances(params: np.ndarray, cos_incidence: np.ndarray, thickness: np.ndarray,
                         *, x0: float = X0_SILICON, mass: float = helix.PION_MASS,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Variances added to (phi, theta) of bound parameters crossing a module.

    ``cos_incidence`` is |normal . direction|; the path in the slab is thickness / cos.
    """
    params = np.asarray(params, float)
    cos_inc = np.maximum(np.abs(np.asarray(cos_incidence, float)), 1e-6)
    x_over_x0 = np.ascontiguousarray(np.broadcast_to(
        np.asarray(thickness, float) / cos_inc / x0, (len(params),)))
    var_phi, var_theta = np.empty(len(params)), np.empty(len(params))
    _scattering_rows(np.ascontiguousarray(params[:, QOP]),
                     np.ascontiguousarray(params[:, THETA]), x_over_x0, mass, var_phi, var_theta)
    return var_phi, var_theta


@numba.njit(cache=True)
def _scattering_rows(qop: np.ndarray, theta: np.ndarray, x_over_x0: np.ndarray, mass: float,
                     var_phi: np.ndarray, var_theta: np.ndarray) -> None:
    for i in range(len(qop)):
        var_phi[i], var_theta[i] = _formulas.scattering_variances(qop[i], theta[i],
                                                                  x_over_x0[i], mass)


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


def apply_energy_loss(qop: np.ndarray, de: np.ndarray, mass: float = helix.PION_MASS,
                      sign: float = 1.0) -> np.ndarray:
    """q/p after losing (``sign`` = 1) or, backwards, regaining (-1) energy ``de`` (GeV)."""
    qop, de = np.broadcast_arrays(np.asarray(qop, float), np.asarray(de, float))
    out = np.empty(qop.shape)
    _apply_energy_loss_rows(np.ascontiguousarray(qop).reshape(-1),
                            np.ascontiguousarray(de).reshape(-1), mass, sign, out.reshape(-1))
    return out


@numba.njit(cache=True)
def _apply_energy_loss_rows(qop: np.ndarray, de: np.ndarray, mass: float, sign: float,
                            out: np.ndarray) -> None:
    for i in range(len(out)):
        out[i] = _formulas.apply_energy_loss(qop[i], de[i], mass, sign)


def slab_noise(params: np.ndarray, cos_incidence: np.ndarray, slab: np.ndarray,
               mass: float = helix.PION_MASS) -> tuple[np.ndarray, np.ndarray]:
    """Noise (n, 6, 6) and mean energy loss (n,) GeV of bound states crossing slabs.

    ``slab`` is (n, 4): ``(thickness mm, x0 mm, molar_e_rho, excitation)`` per crossing; the
    path is thickness / |cos incidence|.
    """
    params = np.ascontiguousarray(params, dtype=float)
    slab = np.ascontiguousarray(slab, dtype=float)
    cos_inc = np.ascontiguousarray(np.broadcast_to(np.asarray(cos_incidence, float),
                                                   (len(params),)))
    variances, de = np.empty((len(params), 3)), np.empty(len(params))
    _slab_rows(params, cos_inc, slab, mass, variances, de)
    noise = np.zeros((len(params), 6, 6))
    noise[:, PHI, PHI], noise[:, THETA, THETA] = variances[:, 0], variances[:, 1]
    noise[:, QOP, QOP] = variances[:, 2]
    return noise, de


@numba.njit(cache=True)
def _slab_rows(params: np.ndarray, cos_inc: np.ndarray, slab: np.ndarray, mass: float,
               variances: np.ndarray, de: np.ndarray) -> None:
    """``formulas.slab_effects`` per row: (var phi, var theta, var q/p) and the mean loss."""
    for i in range(len(params)):
        (variances[i, 0], variances[i, 1], variances[i, 2],
         de[i]) = _formulas.slab_effects(params[i, QOP], params[i, THETA], cos_inc[i],
                                         slab[i, 0], slab[i, 1], slab[i, 2], slab[i, 3], mass)


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

    def crossings(self, free: np.ndarray, s_end: np.ndarray, bz: float | np.ndarray,
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
        h_per_qop = helix.h_per_qop_rows(bz, len(free))
        n = _crossing_rows(free, s_end, h_per_qop, mass, self.disc_z, self.disc_rmin,
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
                 dst_rotation: np.ndarray, *, bz: float | np.ndarray,
                 mass: float = helix.PION_MASS,
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
                   np.ascontiguousarray(dst_rotation, dtype=float),
                   helix.h_per_qop_rows(bz, n), mass,
                   noise.reshape(n, 36), loss)
        return noise, loss


@numba.njit(cache=True)
def noise_rows(track: np.ndarray, at: np.ndarray, normal: np.ndarray, slab: np.ndarray,
               dst_center: np.ndarray, dst_rotation: np.ndarray, h_per_qop: np.ndarray,
               mass: float,
               noise: np.ndarray, loss: np.ndarray) -> None:
    """``PassiveMaterial.noise_at``'s sums, one crossing at a time (``formulas.passive_noise``:
    the slab's scattering and straggling in the bound frame of the plane tangent to the surface
    there, transported to the segment's destination plane with the propagation Jacobian).
    ``noise`` is (n, 36); crossings whose propagation fails add no noise (their energy loss
    still counts)."""
    one = np.empty((6, 6))
    rot, center, params, out = np.empty((3, 3)), np.empty(3), np.empty(6), np.empty(6)
    jac, work8, tangent = np.empty((6, 6)), np.empty((8, 8)), np.empty(8)
    b2f, f2b, m1, proj = np.empty((8, 6)), np.empty((6, 8)), np.empty((8, 6)), np.empty(6)
    q, jq = np.empty((6, 6)), np.empty((6, 6))
    for k in range(len(track)):
        t = track[k]
        loss[t] += _formulas.passive_noise(
            at[k], normal[k, 0], normal[k, 1], normal[k, 2], slab[k], dst_center[t],
            dst_rotation[t], h_per_qop[t], mass, one, rot, center, params, out, jac, work8,
            tangent, b2f, f2b, m1, proj, q, jq)
        for r in range(6):
            for c in range(6):
                noise[t, r * 6 + c] += one[r, c]


_tangent_frame_into = _formulas.tangent_frame_into


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
def _crossing_rows(free: np.ndarray, s_end: np.ndarray, h_per_qop: np.ndarray, mass: float,
                   disc_z: np.ndarray, disc_rmin: np.ndarray, disc_rmax: np.ndarray,
                   cyl_r: np.ndarray, cyl_zmin: np.ndarray, cyl_zmax: np.ndarray,
                   track: np.ndarray, surface: np.ndarray, at: np.ndarray) -> int:
    """Fill (track, surface, free state) of every crossing, discs first; returns the count.
    Surfaces number the discs, then the cylinders (``formulas.disc_path``,
    ``cylinder_segment_path``)."""
    n = 0
    for i in range(len(free)):
        x, y, z, tx, ty, tz = free[i, 0], free[i, 1], free[i, 2], free[i, 4], free[i, 5], free[i, 6]
        h = h_per_qop[i] * free[i, helix.QOP]
        for d in range(len(disc_z)):
            s, inside = _formulas.disc_path(z, tz, s_end[i], disc_z[d])
            if not inside:
                continue
            r = _formulas.transverse_radius_at(x, y, z, tx, ty, tz, h, s)
            if disc_rmin[d] <= r <= disc_rmax[d]:
                helix.state_at(free[i], s, h_per_qop[i], mass, at[n])
                track[n], surface[n] = i, d
                n += 1
    for i in range(len(free)):
        x, y, z, tx, ty, tz = free[i, 0], free[i, 1], free[i, 2], free[i, 4], free[i, 5], free[i, 6]
        h = h_per_qop[i] * free[i, helix.QOP]
        start_r = np.hypot(x, y)
        end_r = _formulas.transverse_radius_at(x, y, z, tx, ty, tz, h, s_end[i])
        for c in range(len(cyl_r)):
            if not _formulas.radius_between(start_r, end_r, cyl_r[c]):
                continue
            s = _segment_cylinder_path(free[i], cyl_r[c], s_end[i], h_per_qop[i])
            if np.isfinite(s) and cyl_zmin[c] <= z + s * tz <= cyl_zmax[c]:
                helix.state_at(free[i], s, h_per_qop[i], mass, at[n])
                track[n], surface[n] = i, len(disc_z) + c
                n += 1
    return n


@numba.njit(cache=True)
def _segment_cylinder_path(free: np.ndarray, radius: float, s_end: float, h_per_qop: float
                           ) -> float:
    """Path from ``free`` to its first crossing of r = ``radius`` towards ``s_end`` (negative:
    backwards), nan when it lies beyond ``s_end`` (``formulas.cylinder_segment_path``)."""
    s, found = _formulas.cylinder_segment_path(free[0], free[1], free[4], free[5],
                                               h_per_qop * free[helix.QOP], s_end, radius)
    return s if found else np.nan


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
