"""Cylinder crossings of helix segments against a dense independent scan."""

from __future__ import annotations

import numpy as np

from taas.tracking import helix
from taas.tracking.material import _segment_cylinder_path


def test_cylinder_crossing_matches_dense_scan():
    rng = np.random.default_rng(4)
    n, bz = 300, 2.0
    free = np.zeros((n, 8))
    phi = rng.uniform(-np.pi, np.pi, n)
    theta = rng.uniform(0.3, 2.8, n)
    pt = rng.uniform(0.5, 10.0, n)
    free[:, 0:3] = rng.normal(0, 0.02, (n, 3))
    free[:, 4:7] = np.stack([np.cos(phi) * np.sin(theta), np.sin(phi) * np.sin(theta),
                             np.cos(theta)], 1)
    free[:, 7] = rng.choice([-1, 1], n) * np.sin(theta) / pt
    radius = rng.uniform(20, 190, n)
    s_end = np.full(n, 400.0 / np.sin(theta).min())
    s_grid = np.linspace(0, s_end[0], 20001)
    # the dense scan: first sample beyond the radius, refined linearly
    r = np.stack([np.hypot(*helix.helix_at(free, np.full(n, s), bz)[:, :2].T) for s in s_grid], 1)
    ends = r[:, -1]
    usable = ends > radius  # the segment must end beyond the cylinder
    first = np.argmax(r > radius[:, None], axis=1)
    lo, hi = s_grid[first - 1], s_grid[first]
    r_lo, r_hi = r[np.arange(n), first - 1], r[np.arange(n), first]
    scan = lo + (radius - r_lo) / (r_hi - r_lo) * (hi - lo)
    rows = np.flatnonzero(usable)
    h_per_qop = -helix.K_FIELD * bz
    s = np.array([_segment_cylinder_path(free[i], radius[i], s_end[i], h_per_qop) for i in rows])
    at = helix.helix_at(free[usable], s, bz)
    np.testing.assert_allclose(np.hypot(at[:, 0], at[:, 1]), radius[usable], atol=1e-6)
    np.testing.assert_allclose(s, scan[usable], atol=1e-3)
    # backwards from the segment's end (the smoother's and the fit's direction): the same point
    end = helix.helix_at(free, s_end, bz)
    back = np.array([_segment_cylinder_path(end[i], radius[i], -s_end[i], h_per_qop)
                     for i in rows])
    np.testing.assert_allclose(back, s - s_end[usable], atol=1e-6)
    # a cylinder beyond the segment's reach is not crossed
    short = [_segment_cylinder_path(free[i], radius[i], 0.5 * s[j], h_per_qop)
             for j, i in enumerate(rows)]
    assert np.isnan(short).all()
