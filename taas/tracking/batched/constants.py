"""Physical constants and parameter-vector slots of the track math, in one dependency-free place.

``taas.tracking.helix``, ``parameters`` and ``material`` re-export these names (their public
homes); they live here so that ``taas.tracking.batched.formulas`` can use them without importing
the numba modules that are themselves built from it.
"""

from __future__ import annotations

#: GeV / (T mm): p_T [GeV] = K * B [T] * R [mm] for unit charge.
K_FIELD = 0.000299792458
#: Speed of light in mm / ns.
C_MM_PER_NS = 299.792458
#: Default mass hypothesis (charged pion, GeV), as in the ACTS examples.
PION_MASS = 0.13957039

#: Free-vector slots ``(x, y, z, t, Tx, Ty, Tz, q/p)``.
FREE_TIME = 3
FREE_QOP = 7

#: Bound (and perigee) parameter slots ``(loc0, loc1, phi, theta, q/p, t)``.
LOC0, LOC1, PHI, THETA, QOP, TIME = range(6)

#: Below this |h s| the Taylor forms of the sinc derivatives are exact to double precision.
SERIES_LIMIT = 1e-2
#: Newton's stopping rule for plane intersections: relative step, and iterations allowed.
PLANE_TOL = 1e-12
PLANE_MAX_ITER = 30

#: Highland constant, GeV.
HIGHLAND_GEV = 0.0136
#: Bethe constant K = 4 pi N_A r_e^2 m_e c^2: 0.307075 MeV cm^2 / mol, in GeV mm^2 / mol.
BETHE_K = 0.307075e-3 * 100.0
#: Electron mass, GeV.
ELECTRON_MASS = 0.51099895e-3
#: Plasma energy constant: hbar omega_p = 28.816 eV sqrt(rho <Z/A> [g/cm^3]), in GeV.
PLASMA_GEV = 28.816e-9
