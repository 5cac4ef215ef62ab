"""Propagating in a field that is not uniform: the effective field of each step.

The helix of ``taas.tracking.helix`` is exact in a uniform field along z. In a solenoid
(``taas.detector.field``) the field falls towards the coil's ends and turns outwards, and a
forward track there bends much less than a 2 T helix says: on the real TrackML sample the CKF
lost forward particles whose helices missed their next measurements by millimetres.

The propagation stays a helix per step, in the *effective* field of that step
(``SolenoidField.effective_bz``, ``Bz - cot(theta) Br``) at the midpoint between the modules
it joins, as fast trackers do (CMS mkFit propagates helices in the local field). Within a step
the helix does not see the field change, and it keeps the polar angle that Br turns: against
the Lorentz force integrated through the solenoid (``tests/tracking/test_field_propagation.py``)
a 1.5 GeV forward track's 300 mm steps miss by 0.05-0.3 mm up to |z| = 1.5 m and up to 1.1 mm
near the coil's end, a quarter of what uniform 2 T helices miss. On the real TrackML sample
that recovers the forward particles the CKF lost (``benchmarks/trackml_real_data.py``); a
Runge-Kutta stepper with Jacobian transport (ACTS' EigenStepper) is what would remove the
rest.

A uniform field gives every step the same float, so every caller keeps its scalar path (and
its exact results) when no solenoid is attached.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.detector.field import Field, UniformField


def field_of(detector: Detector, bz: float) -> Field:
    """The field of ``detector``'s data: the solenoid attached to it (``detector.field``,
    set by readers of data simulated in one), else uniform ``bz``."""
    attached = getattr(detector, "field", None)
    if attached is not None:
        return attached
    return UniformField(bz)


def step_bz(field: Field, start: Any, end: Any, theta: Any,
            xp: ModuleType = np) -> float | Any:
    """The effective field of steps from ``start`` to ``end`` (n, 3) of tracks at polar angle
    ``theta`` (n,): at the midpoint. ``xp``: the arrays' namespace (numpy or torch)."""
    if isinstance(field, UniformField):
        return field.bz
    if xp is np:
        start, end, theta = np.asarray(start), np.asarray(end), np.asarray(theta, float)
    return field.effective_bz(0.5 * (start + end), 1.0 / xp.tan(theta), xp)


def point_bz(field: Field, free: Any, xp: ModuleType = np) -> float | Any:
    """The effective field at free vectors ``free`` (n, 8) (position, direction), arrays of
    ``xp``."""
    if isinstance(field, UniformField):
        return field.bz
    tz = free[:, 6]
    tt = xp.hypot(free[:, 4], free[:, 5])
    return field.effective_bz(free[:, :3], tz / xp.clip(tt, 1e-12, None), xp)


def track_step_bz(field: Field, centers: np.ndarray, theta: np.ndarray) -> float | np.ndarray:
    """The effective field of every step of N tracks through modules ``centers`` (N, n, 3)
    at polar angles ``theta`` (N,): (N, n), entry k the step from module k-1 to k (entry 0,
    no step, repeats entry 1), as ``taas.tracking.kalman.kalman_fit`` takes it."""
    if isinstance(field, UniformField):
        return field.bz
    centers = np.asarray(centers, float)
    n_tracks, n = centers.shape[:2]
    cot = np.repeat(1.0 / np.tan(np.asarray(theta, float)), max(n - 1, 0))
    mid = 0.5 * (centers[:, :-1] + centers[:, 1:]).reshape(-1, 3)
    steps = np.asarray(field.effective_bz(mid, cot)).reshape(n_tracks, n - 1)
    return np.concatenate([steps[:, :1], steps], axis=1) if n > 1 else np.full((n_tracks, n),
                                                                                field.max_bz)
