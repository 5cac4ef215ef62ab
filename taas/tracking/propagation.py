"""Bound parameters from one plane to another along the helix, with the transport Jacobian.

The Jacobian is analytic, chained as in ACTS' ``boundToBoundJacobian``:

    J = J_free->bound(B) . (1 - (dF/ds) n^T / (n . T)) . J_transport(s) . J_bound->free(A)

where the middle factor moves a varied end point back onto plane B along the trajectory (the
path length s depends on the start parameters through the intersection condition). The tests
compare it with central finite differences of ``propagate``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from taas.tracking import helix
from taas.tracking.parameters import (
    bound_to_free,
    bound_to_free_jacobian,
    free_to_bound,
    free_to_bound_jacobian,
)


class Propagation(NamedTuple):
    """Result of ``propagate`` for n tracks."""

    params: np.ndarray  #: (n, 6) bound parameters on the destination planes
    jacobian: np.ndarray | None  #: (n, 6, 6) d(params at B)/d(params at A), when asked for
    path: np.ndarray  #: (n,) path length (mm), negative when B lies behind A
    cos_incidence: np.ndarray  #: (n,) normal(B) . direction at B
    ok: np.ndarray  #: (n,) False where no intersection was found (params are then NaN)


def propagate(params: np.ndarray, src_center: np.ndarray, src_rotation: np.ndarray,
              dst_center: np.ndarray, dst_rotation: np.ndarray, *, bz: float,
              jacobian: bool = True, mass: float = helix.PION_MASS) -> Propagation:
    """Propagate bound parameters from planes A (src) to planes B (dst), one pair per row."""
    params = np.asarray(params, float)
    free = bound_to_free(params, src_center, src_rotation)
    normal = dst_rotation[:, :, 2]
    s, ok = helix.intersect_plane(free, dst_center, normal, bz)
    s = np.where(ok, s, 0.0)
    end = helix.helix_at(free, s, bz, mass)
    out = free_to_bound(end, dst_center, dst_rotation)
    cos_inc = np.einsum("ni,ni->n", normal, end[:, helix.DIR])
    out[~ok] = np.nan
    if not jacobian:
        return Propagation(out, None, s, cos_inc, ok)
    transport, tangent = helix.transport_jacobian(free, s, bz, mass)
    safe_cos = np.where(np.abs(cos_inc) > 1e-12, cos_inc, 1.0)
    normal8 = np.zeros((len(free), 8))
    normal8[:, helix.POS] = normal
    correction = np.eye(8) - tangent[:, :, None] * (normal8 / safe_cos[:, None])[:, None, :]
    jac = (free_to_bound_jacobian(end, dst_rotation) @ correction @ transport
           @ bound_to_free_jacobian(params, src_rotation))
    jac[~ok] = np.nan
    return Propagation(out, jac, s, cos_inc, ok)
