"""Ordering a proto-track's measurements along the track before the fit (``order_along_tracks``).

The Kalman filter needs the measurements in the order the particle crossed them. Distance from
the origin got that wrong for particles from a vertex far from z = 0 heading back towards it
(found fitting the same lists as ACTS, whose navigator orders them itself): measured from the
track's own beam-line origin the order is right.
"""

from __future__ import annotations

import numpy as np

from taas.tracking.fitter import order_along_tracks


def _points(r: np.ndarray, z: np.ndarray, phi: float = 0.3) -> np.ndarray:
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def test_displaced_vertex_heading_back_to_the_origin() -> None:
    r = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0])
    z = 150.0 - 1.05 * r  # vertex at z = +150 mm, eta about -0.9: crosses z = 0 at r = 143
    xyz = _points(r, z)
    assert np.argmin(np.linalg.norm(xyz, axis=1)) != 0  # the origin rule would misorder these
    rng = np.random.default_rng(3)
    shuffled = rng.permutation(len(r))
    ordered = order_along_tracks(np.array([0, len(r)]), shuffled, xyz)
    np.testing.assert_array_equal(ordered, np.arange(len(r)))


def test_several_tracks_and_endcap_disks() -> None:
    # track 0: barrel from z = -80; track 1: endcap disks at nearly equal r, ordered by |z|
    xyz_a = _points(np.array([32.0, 72.0, 116.0]), -80.0 + 0.5 * np.array([32.0, 72.0, 116.0]))
    xyz_b = _points(np.array([100.0, 101.0, 103.0, 104.0]),
                    np.array([-600.0, -700.0, -820.0, -950.0]), phi=-2.0)
    xyz = np.concatenate([xyz_a, xyz_b])
    indices = np.array([2, 0, 1, 6, 4, 3, 5])
    ordered = order_along_tracks(np.array([0, 3, 7]), indices, xyz)
    np.testing.assert_array_equal(ordered, [0, 1, 2, 3, 4, 5, 6])


def test_empty_and_single_hit_lists() -> None:
    xyz = _points(np.array([50.0]), np.array([10.0]))
    np.testing.assert_array_equal(order_along_tracks(np.array([0]), np.zeros(0, np.int64), xyz),
                                  np.zeros(0, np.int64))
    np.testing.assert_array_equal(order_along_tracks(np.array([0, 0, 1]), np.array([0]), xyz),
                                  [0])


def test_lists_sorted_as_lexsort_would_ties_kept_in_order() -> None:
    """Many lists of random lengths (empty, single, long) with repeated distances: the same
    permutation as numpy's stable lexsort by (list, distance)."""
    from taas.tracking.fitter import _sort_within_lists

    rng = np.random.default_rng(11)
    lengths = np.r_[0, 1, rng.integers(0, 40, 500), 700]
    offsets = np.r_[0, np.cumsum(lengths)]
    key = rng.integers(0, 20, offsets[-1]).astype(np.float64)  # ties within lists
    indices = rng.permutation(offsets[-1])
    track = np.repeat(np.arange(len(lengths)), lengths)
    np.testing.assert_array_equal(_sort_within_lists(offsets, key, indices),
                                  indices[np.lexsort((key, track))])
