"""Cluster-shape features of space points, the per-node inputs of GNN graph building.

A charged particle crossing a sensor of thickness ``t`` at an angle leaves a cluster whose extent
on the module grows with the crossing angle, so the cluster shape carries a (sign-ambiguous)
estimate of the track direction that graph building can use to reject fake edges. These are the
features Exa.TrkX / ACORN compute from TrackML cells (cell count, charge, local and global
direction); they are defined once here so that every backend produces the same ones.
"""

from __future__ import annotations

import numpy as np

from taas.edm.table import Table, col


class SpacepointFeatures(Table):
    """Cluster-shape features, one row per space point (same row order as ``Spacepoints``).

    The *shape vector* is ``(extent_u, extent_v, thickness)`` in the module frame: the cluster's
    extent in mm along u and v and the sensor thickness along w, i.e. the direction of a straight
    track that would fire exactly that extent. Its signs are unknown (an extent is unsigned), so
    it is a direction up to reflections; the global components are that vector rotated to the
    global frame.
    """

    NAME = "spacepoint_features"
    SPECS = (
        col("n_cells", "i4", "cells in the cluster"),
        col("charge", "f4", "summed cell values"),
        col("size_u", "i4", "cluster extent along u (cells)"),
        col("size_v", "i4", "cluster extent along v (cells)"),
        col("extent_u", "f8", "size_u * pitch_u (mm)"),
        col("extent_v", "f8", "size_v * pitch_v (mm)"),
        col("local_angle", "f8", "atan2(extent_v, extent_u) in [0, pi/2] (rad)"),
        col("local_eta", "f8", "pseudorapidity of the shape vector about the module's w axis"),
        col("local_phi", "f8", "azimuth of the shape vector in the (u, v) plane (rad)"),
        col("gx", "f8", "shape vector in the global frame (mm)"),
        col("gy", "f8"),
        col("gz", "f8"),
        col("global_eta", "f8", "pseudorapidity of the global shape vector"),
        col("global_phi", "f8", "azimuth of the global shape vector (rad)"),
    )


def eta_phi(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pseudorapidity and azimuth of vectors; eta is +-inf along the z axis (never NaN)."""
    rho = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / rho)
    eta = np.where(rho > 0, eta, np.copysign(np.inf, z))
    return eta, np.arctan2(y, x)


def shape_features(*, rotation: np.ndarray, thickness: np.ndarray, pitch_u: np.ndarray,
                   pitch_v: np.ndarray, n_cells: np.ndarray, charge: np.ndarray,
                   size_u: np.ndarray, size_v: np.ndarray) -> SpacepointFeatures:
    """Features of clusters on modules with (n, 3, 3) ``rotation`` and per-cluster geometry."""
    extent_u = size_u * pitch_u
    extent_v = size_v * pitch_v
    local = np.stack([extent_u, extent_v, np.asarray(thickness, float)], axis=1)
    glob = np.einsum("nij,nj->ni", rotation, local)
    local_eta, local_phi = eta_phi(local[:, 0], local[:, 1], local[:, 2])
    global_eta, global_phi = eta_phi(glob[:, 0], glob[:, 1], glob[:, 2])
    return SpacepointFeatures(
        n_cells=n_cells, charge=charge, size_u=size_u, size_v=size_v,
        extent_u=extent_u, extent_v=extent_v, local_angle=np.arctan2(extent_v, extent_u),
        local_eta=local_eta, local_phi=local_phi,
        gx=glob[:, 0], gy=glob[:, 1], gz=glob[:, 2],
        global_eta=global_eta, global_phi=global_phi,
    )
