"""Bound parameters from one plane to another along the helix, with the transport Jacobian.

The Jacobian is analytic, chained as in ACTS' ``boundToBoundJacobian``:

    J = J_free->bound(B) . (1 - (dF/ds) n^T / (n . T)) . J_transport(s) . J_bound->free(A)

where the middle factor moves a varied end point back onto plane B along the trajectory (the
path length s depends on the start parameters through the intersection condition). The tests
compare it with central finite differences of ``propagate``. The per-track step is
``taas.tracking.batched.formulas.propagate_state`` (numba flavour), the same text the batched
torch fit runs.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from taas.tracking import helix
from taas.tracking.batched.flavours import NUMBA as _formulas


class Propagation(NamedTuple):
    """Result of ``propagate`` for n tracks."""

    params: np.ndarray  #: (n, 6) bound parameters on the destination planes
    jacobian: np.ndarray | None  #: (n, 6, 6) d(params at B)/d(params at A), when asked for
    path: np.ndarray  #: (n,) path length (mm), negative when B lies behind A
    cos_incidence: np.ndarray  #: (n,) normal(B) . direction at B
    ok: np.ndarray  #: (n,) False where no intersection was found (params are then NaN)

    @property
    def transport(self) -> np.ndarray:
        """The Jacobian, for callers that asked for it (``jacobian=True``, the default)."""
        if self.jacobian is None:
            raise ValueError("propagate(..., jacobian=False) computed no transport Jacobian")
        return self.jacobian


def propagate(params: np.ndarray, src_center: np.ndarray, src_rotation: np.ndarray,
              dst_center: np.ndarray, dst_rotation: np.ndarray, *, bz: float | np.ndarray,
              jacobian: bool = True, mass: float = helix.PION_MASS) -> Propagation:
    """Propagate bound parameters from planes A (src) to planes B (dst), one pair per row.

    One numba loop over the rows (``propagate_rows``): bound -> free, Newton intersection with
    the destination plane, bound parameters there and the chained Jacobian, without the
    (n, 8, 8) temporaries of a vectorised form (the CKF calls this for every candidate-module
    pair of every step)."""
    params = np.ascontiguousarray(params, dtype=float)
    n = len(params)
    arrays = [np.ascontiguousarray(a, dtype=float)
              for a in (src_center, src_rotation, dst_center, dst_rotation)]
    if any(len(a) != n for a in arrays):
        raise ValueError(f"propagate: {n} parameter rows but {[len(a) for a in arrays]} "
                         "source/destination centres and rotations")
    out = np.empty((n, 6))
    jac = np.empty((n if jacobian else 0, 6, 6))
    path, cos_inc, ok = np.empty(n), np.empty(n), np.empty(n, np.bool_)
    propagate_rows(params, *arrays, helix.h_per_qop_rows(bz, n), mass, jac, out, path, cos_inc,
                   ok)
    return Propagation(out, jac if jacobian else None, path, cos_inc, ok)


@numba.njit(cache=True)
def propagate_rows(params: np.ndarray, src_center: np.ndarray, src_rotation: np.ndarray,
                    dst_center: np.ndarray, dst_rotation: np.ndarray, h_per_qop: np.ndarray,
                    mass: float, jac: np.ndarray, out: np.ndarray, path: np.ndarray,
                    cos_inc: np.ndarray, ok_out: np.ndarray) -> None:
    """``propagate`` row by row (``formulas.propagate_state``); ``jac`` has no rows when no
    Jacobian is wanted."""
    want_jac = jac.shape[0] > 0
    jac_row = np.empty((6, 6))
    work8, tangent = np.empty((8, 8)), np.empty(8)
    b2f, f2b, m1, proj = np.empty((8, 6)), np.empty((6, 8)), np.empty((8, 6)), np.empty(6)
    for i in range(len(params)):
        path[i], cos_inc[i], ok_out[i] = _formulas.propagate_state(
            params[i], src_center[i], src_rotation[i], dst_center[i], dst_rotation[i],
            h_per_qop[i], mass, want_jac, out[i], jac[i] if want_jac else jac_row, work8, tangent,
            b2f, f2b, m1, proj)
