"""Highland multiple scattering (PDG RPP 2024 eq. 34.16) and its place in the covariance."""

from __future__ import annotations

import numpy as np
import pytest

from taas.tracking.material import add_scattering, highland_theta0, scattering_variances
from taas.tracking.parameters import PHI, THETA


def test_highland_reference_values():
    # pion, p = 1 GeV, x/X0 = 1 %: 13.6 MeV / 0.990 GeV * 0.1 * (1 + 0.038 ln(0.01 / 0.981))
    assert highland_theta0(np.array([1.0]), np.array([0.01]))[0] == pytest.approx(1.13389e-3,
                                                                                  rel=1e-5)
    # 0.5 GeV through 0.3 mm of silicon at normal incidence
    assert highland_theta0(np.array([-2.0]), np.array([0.3 / 93.7]))[0] == pytest.approx(
        1.25368e-3, rel=1e-5)
    # no material, no scattering (and no log(0) warning)
    assert highland_theta0(np.array([1.0]), np.array([0.0]))[0] == 0.0


def test_scattering_scales_with_incidence_and_theta():
    params = np.zeros((3, 6))
    params[:, THETA] = [np.pi / 2, np.pi / 2, np.pi / 6]
    params[:, 4] = 1.0
    var_phi, var_theta = scattering_variances(params, np.array([1.0, 0.5, 1.0]),
                                              np.full(3, 0.3))
    # inclined crossing: twice the path
    theta0_2x = highland_theta0(np.array([1.0]), np.array([0.6 / 93.7]))[0]
    assert var_theta[1] == pytest.approx(theta0_2x**2, rel=1e-12)
    # phi picks up 1 / sin^2(theta)
    assert var_phi[0] == pytest.approx(var_theta[0], rel=1e-12)
    assert var_phi[2] == pytest.approx(var_theta[2] / np.sin(np.pi / 6) ** 2, rel=1e-12)
    cov = add_scattering(params, np.zeros((3, 6, 6)), np.ones(3), np.full(3, 0.3))
    assert cov[0, PHI, PHI] == pytest.approx(var_phi[0])
    assert np.count_nonzero(cov[0]) == 2
