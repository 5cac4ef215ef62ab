"""Residuals and pulls: known values, the phi seam, broken covariances, Gaussian widths."""

from __future__ import annotations

import numpy as np
import pytest

from taas.errors import InputError
from taas.metrics.resolution import pulls, summarize


def test_known_pulls_and_phi_wrap():
    truth = np.array([[0.1, 2.0, -3.1, 1.0, 0.5, 0.0],
                      [0.0, 0.0, 0.0, 1.5, -0.2, 1.0]])
    params = truth + np.array([[0.02, -0.4, 0.0, 0.01, 0.0, 0.5],
                               [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    params[0, 2] = 3.1  # across the seam: residual 2 pi - 6.2, not 6.2
    cov = np.broadcast_to(np.diag([1e-4, 0.04, 1e-2, 1e-4, 1e-2, 0.25]), (2, 6, 6)).copy()
    cov[1, 5, 5] = 0.0  # a broken variance
    out = pulls(params, cov, truth)
    assert list(out) == ["d0", "z0", "phi", "theta", "qop", "t"]
    assert out["d0"]["pull"][0] == pytest.approx(2.0)
    assert out["z0"]["pull"][0] == pytest.approx(-2.0)
    assert out["phi"]["residual"][0] == pytest.approx(6.2 - 2 * np.pi)
    assert out["theta"]["residual"][0] == pytest.approx(0.01)
    assert out["t"]["pull"][0] == pytest.approx(1.0)
    assert np.isnan(out["t"]["pull"][1])
    assert out["t"]["residual"][1] == 0.0
    assert list(pulls(params, cov, truth, perigee=False))[:2] == ["loc0", "loc1"]
    with pytest.raises(InputError, match="expected"):
        pulls(params[:, :5], cov, truth)


def test_summary_of_gaussian_pulls():
    rng = np.random.default_rng(3)
    n = 20000
    sigma = np.array([0.01, 0.05, 1e-3, 1e-3, 1e-3, 1.0])
    truth = np.zeros((n, 6))
    truth[:, 3] = 1.0
    params = truth + rng.normal(size=(n, 6)) * sigma
    cov = np.broadcast_to(np.diag(sigma**2), (n, 6, 6))
    s = summarize(pulls(params, cov, truth))
    for name in ("d0", "z0", "phi", "theta", "qop", "t"):
        assert s[name]["pull_n"] == n
        assert abs(s[name]["pull_mean"]) < 0.05
        assert s[name]["pull_std"] == pytest.approx(1.0, abs=0.03)
        assert s[name]["pull_width68"] == pytest.approx(1.0, abs=0.05)
    assert s["z0"]["residual_std"] == pytest.approx(0.05, rel=0.03)
    empty = summarize({"x": {"pull": np.array([np.nan])}})
    assert empty["x"]["pull_n"] == 0
    assert empty["x"]["pull_mean"] is None
