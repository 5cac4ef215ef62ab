"""Cluster-shape compatibility of seed doublets (the pixel cluster-shape filter).

A straight track crossing a sensor of thickness ``t`` along direction ``d`` fires cells over
``t |d.u| / |d.w|`` mm along the module's u axis and ``t |d.v| / |d.w|`` along v. A doublet fixes
``d`` (its chord), so both of its clusters must be about as long as that: a cluster of one cell
cannot belong to a doublet crossing the barrel at |cot(theta)| = 3, which fires some ten 50 um
cells of a 150 um sensor. CMS filters its pixel doublets and triplets this way
(``ClusterShapeHitFilter``); here the check is analytic, from the module geometry, with a
tolerance in cells measured on simulated events (``SeedingConfig.shape_excess_cells``,
``shape_deficit_cells``).

The check needs no division: with ``a_u = t / pitch_u * u`` and ``a_v = t / pitch_v * v`` (the
module axes scaled to cells per unit of ``d.w``) a cluster of ``size_v`` cells is compatible
when ``(size_v - excess) |d.w| <= |d.a_v| <= (size_v + deficit) |d.w|``, and likewise along u.

A cluster that reaches the module's edge along an axis may have lost cells beyond it (a steep
track leaving the sensor through its side): along that axis it may be any amount shorter than
its track fires, so only the excess side is checked there (``open_u``/``open_v``; CMS' filter
likewise spares clusters on a module edge). On the seed-11 events such truncated clusters had
cost particles their only neighbouring-layer seed.
"""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.errors import InputError

#: Columns of the per-space-point shape table the seeding kernel reads, in order.
SHAPE_COLUMNS = ("w_x", "w_y", "w_z", "au_x", "au_y", "au_z", "av_x", "av_y", "av_z",
                 "size_u", "size_v", "open_u", "open_v")

#: A cluster whose far end along an axis, estimated from its centroid and size, comes within
#: this many cells of the module's edge counts as reaching the edge (the charge-weighted
#: centroid sits up to about a cell off the middle of the cluster's cells).
EDGE_MARGIN_CELLS = 1.5


def cluster_shapes(detector: Detector, module_keys: np.ndarray, size_u: np.ndarray,
                   size_v: np.ndarray, local_u: np.ndarray, local_v: np.ndarray) -> np.ndarray:
    """Shape table ``(n, len(SHAPE_COLUMNS))`` of n clusters on modules ``module_keys``.

    ``size_u`` and ``size_v`` are the clusters' extents in cells (``SpacepointFeatures``),
    ``local_u``, ``local_v`` their centroids on the module (mm), from which ``open_u`` and
    ``open_v`` (1.0: the cluster reaches the module's edge along that axis, within
    ``EDGE_MARGIN_CELLS``; trapezoid bounds included) are set. A cluster without a size (below
    one cell: a measurement that did not come from cells) gets a row of zeros, which every
    direction fits: its space point is seeded without the cut. An unknown module key raises
    ``InputError``; so do inputs of different lengths.
    """
    keys = np.asarray(module_keys)
    su = np.asarray(size_u, np.float64)
    sv = np.asarray(size_v, np.float64)
    lu = np.asarray(local_u, np.float64)
    lv = np.asarray(local_v, np.float64)
    if not len(keys) == len(su) == len(sv) == len(lu) == len(lv):
        raise InputError(f"cluster shapes: {len(keys)} module keys, {len(su)} size_u, "
                         f"{len(sv)} size_v, {len(lu)} local_u and {len(lv)} local_v values")
    rows = detector.index_of(keys, column="measurements.module_key")
    rotation = detector.rotation[rows]  # columns: u, v, w axes in the global frame
    m = detector.modules
    thickness = np.asarray(m["thickness"], np.float64)[rows]
    pitch_u = np.asarray(m["pitch_u"], np.float64)[rows]
    pitch_v = np.asarray(m["pitch_v"], np.float64)[rows]
    table = np.empty((len(keys), len(SHAPE_COLUMNS)))
    table[:, 0:3] = rotation[:, :, 2]
    table[:, 3:6] = rotation[:, :, 0] * (thickness / pitch_u)[:, None]
    table[:, 6:9] = rotation[:, :, 1] * (thickness / pitch_v)[:, None]
    table[:, 9] = su
    table[:, 10] = sv
    hv = np.asarray(m["hv"], np.float64)[rows]
    min_hu = np.asarray(m["min_hu"], np.float64)[rows]
    max_hu = np.asarray(m["max_hu"], np.float64)[rows]
    # half width along u at the centroid's v (trapezoids widen linearly from -hv to +hv)
    hu = min_hu + (max_hu - min_hu) * np.clip((lv + hv) / (2.0 * hv), 0.0, 1.0)
    table[:, 11] = np.abs(lu) + (0.5 * su + EDGE_MARGIN_CELLS) * pitch_u >= hu
    table[:, 12] = np.abs(lv) + (0.5 * sv + EDGE_MARGIN_CELLS) * pitch_v >= hv
    table[(su < 1) | (sv < 1)] = 0.0
    return table


def spacepoint_shapes(detector: Detector, measurements: Measurements,
                      spacepoints: Spacepoints) -> np.ndarray:
    """Shape table of the clusters behind ``spacepoints`` (one row per space point)."""
    rows = spacepoints.measurement_index
    return cluster_shapes(detector, measurements.module_key[rows], measurements.size_u[rows],
                          measurements.size_v[rows], measurements.local_u[rows],
                          measurements.local_v[rows])


def predicted_cells(shapes: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells a straight track along ``direction`` (n, 3) crosses along u and v of each
    cluster's module (``inf`` for a track in the module plane)."""
    d = np.asarray(direction, np.float64)
    along_w = np.abs(np.einsum("ij,ij->i", shapes[:, 0:3], d))
    with np.errstate(divide="ignore", invalid="ignore"):
        cells_u = np.abs(np.einsum("ij,ij->i", shapes[:, 3:6], d)) / along_w
        cells_v = np.abs(np.einsum("ij,ij->i", shapes[:, 6:9], d)) / along_w
    return cells_u, cells_v
