"""Material effects at modules: multiple scattering only.

Each module is a silicon slab of its table thickness (``X0_SILICON``); a track crossing it at
incidence cosine ``c = |n . T|`` traverses ``x = thickness / c``. The Highland formula
(PDG RPP 2024, "Passage of particles through matter", eq. 34.16)

    theta0 = 13.6 MeV / (beta c p) * z * sqrt(x / X0) * (1 + 0.038 ln(x z^2 / (X0 beta^2)))

gives the width of the projected scattering angle; both projections are independent, so the
direction picks up variance theta0^2 in theta and theta0^2 / sin^2(theta) in phi (a kink of
angle a perpendicular to T in the transverse direction changes phi by a / sin(theta)). Unit
charge (z = 1) and the fitter's mass hypothesis give beta.

The whole kink is placed at the module's mid-plane, after the measurement there (the thin-slab
model of ACTS' surface material with full post-update). Mean energy loss is ignored: a 0.3 mm
silicon module takes ~0.1 MeV, far below the momentum resolution of the tracks this fit serves
(p > ~0.5 GeV); electrons, whose bremsstrahlung this model would miss, are out of scope.
"""

from __future__ import annotations

import numpy as np

from taas.tracking import helix
from taas.tracking.parameters import PHI, QOP, THETA

#: Radiation length of silicon, mm (PDG atomic and nuclear properties: 9.370 cm).
X0_SILICON = 93.7
#: Highland constant, GeV.
HIGHLAND_GEV = 0.0136


def highland_theta0(qop: np.ndarray, x_over_x0: np.ndarray,
                    mass: float = helix.PION_MASS) -> np.ndarray:
    """Projected r.m.s. scattering angle (rad) of a unit-charge particle; 0 where x = 0."""
    qop = np.abs(np.asarray(qop, float))
    xx0 = np.asarray(x_over_x0, float)
    beta2 = 1.0 / (1.0 + (mass * qop) ** 2)  # beta^2 = p^2 / (p^2 + m^2)
    positive = xx0 > 0
    safe = np.where(positive, xx0, 1.0)
    log_term = np.maximum(1.0 + 0.038 * np.log(safe / beta2), 0.0)
    theta0 = HIGHLAND_GEV * qop / np.sqrt(beta2) * np.sqrt(safe) * log_term
    return np.where(positive, theta0, 0.0)


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
