"""The magnetic field an event was simulated in, read back from its truth.

Reconstruction assumes a field (``CkfConfig.bz``, the fitter's and the seeding's ``bz``: a
uniform 2 T solenoid, as the ACTS Generic detector's examples use). Data simulated in another
field — the real TrackML events were made with a solenoid whose field falls from 2 T at the
centre to about zero beyond |z| = 2 m — bend differently from what the propagator predicts, and
the CKF loses forward tracks to its chi2 cut. Nothing in an event file says which field made
it, but its truth does: between two consecutive hits of one particle the transverse momentum
turns by ``dphi = -q K Bz s / pT`` (``K`` = 0.2998 GeV / (T m), ``s`` the transverse arc
length), so every pair of truth hits with momenta measures Bz where it lies. Binned in (r, |z|)
that is a field map good to about a percent where tracks are dense.

Only Bz is measured: the transverse turn does not see the radial component, which matters only
near the solenoid's ends, where Bz is already small.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from taas.detector.field import Field, SolenoidField, UniformField
from taas.events.event import Event
from taas.tracking.helix import K_FIELD


@dataclass(frozen=True)
class FieldSamples:
    """One field measurement per pair of consecutive truth hits: its midpoint ``r`` and ``z``
    (mm), the particle's ``cot_theta`` (pz / pT) and ``bz`` (T), the field that turned the
    transverse momentum there (``Bz - cot(theta) Br``: ``taas.tracking.field``)."""

    r: np.ndarray
    z: np.ndarray
    cot_theta: np.ndarray
    bz: np.ndarray

    def __len__(self) -> int:
        return len(self.bz)

    @classmethod
    def concat(cls, parts: list[FieldSamples]) -> FieldSamples:
        """The samples of several events together."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts] or [np.zeros(0)])
                     for name in ("r", "z", "cot_theta", "bz")))

    def binned(self, r_edges: np.ndarray, z_edges: np.ndarray,
               min_samples: int = 5) -> list[dict[str, float]]:
        """Median Bz and its spread (half the 16-84% range) per (r, |z|) bin with at least
        ``min_samples`` samples (the median: scattering and energy loss give long tails)."""
        rows = []
        az = np.abs(self.z)
        for r0, r1 in itertools.pairwise(r_edges):
            for z0, z1 in itertools.pairwise(z_edges):
                sel = (self.r >= r0) & (self.r < r1) & (az >= z0) & (az < z1)
                if sel.sum() < min_samples:
                    continue
                lo, mid, hi = np.percentile(self.bz[sel], [16, 50, 84])
                rows.append({"r_min": float(r0), "r_max": float(r1), "abs_z_min": float(z0),
                             "abs_z_max": float(z1), "samples": int(sel.sum()),
                             "bz_median": float(mid), "bz_spread": float((hi - lo) / 2)})
        return rows


def field_samples(event: Event, *, min_pt: float = 0.8, min_step: float = 20.0) -> FieldSamples:
    """Bz measured on every pair of consecutive truth hits of particles with pT > ``min_pt``
    GeV at their first hit, hits at least ``min_step`` mm apart in the transverse plane (closer
    pairs turn too little to measure against scattering).

    Hits of a particle are ordered by their distance from its production vertex. That order
    is the order along the track for particles that do not turn back inside the tracker, which
    ``min_pt`` ensures: at 0.8 GeV in 2 T a helix is 2.7 m across, the tracker 2 m.
    """
    hits, particles = event.hits, event.particles
    pid = hits["particle_id"]
    keep = pid > 0
    order = np.argsort(pid[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]
    if len(rows) == 0:
        empty = np.zeros(0)
        return FieldSamples(empty, empty, empty, empty)
    ids = particles["particle_id"]
    by_id = np.argsort(ids)
    where = by_id[np.clip(np.searchsorted(ids[by_id], pid[rows]), 0, len(ids) - 1)]
    known = ids[where] == pid[rows]
    rows, where = rows[known], where[known]
    vertex = np.stack([particles["vx"], particles["vy"], particles["vz"]], axis=1)[where]
    xyz = np.stack([hits["tx"], hits["ty"], hits["tz"]], axis=1)[rows]
    distance = np.linalg.norm(xyz - vertex, axis=1)
    # within each particle, hits by distance from the vertex
    order = np.lexsort((distance, pid[rows]))
    rows, where, xyz = rows[order], where[order], xyz[order]
    px, py, pz = hits["tpx"][rows], hits["tpy"][rows], hits["tpz"][rows]
    pt = np.hypot(px, py)
    charge = particles["q"][where].astype(np.float64)

    same = pid[rows][1:] == pid[rows][:-1]
    first = np.r_[True, ~same]
    start_pt = pt[np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))]
    chord = np.hypot(xyz[1:, 0] - xyz[:-1, 0], xyz[1:, 1] - xyz[:-1, 1])
    dphi = np.remainder(np.arctan2(py[1:], px[1:]) - np.arctan2(py[:-1], px[:-1]) + np.pi,
                        2 * np.pi) - np.pi
    half = np.abs(dphi) / 2
    arc = chord * np.where(half > 1e-9, half / np.sin(np.maximum(half, 1e-9)), 1.0)
    use = (same & (start_pt[1:] > min_pt) & (chord >= min_step)
           & (charge[1:] != 0) & (pt[1:] > 0) & (pt[:-1] > 0))
    mean_pt = 0.5 * (pt[1:] + pt[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        bz = -dphi * mean_pt / (charge[1:] * K_FIELD * arc)
    mid = 0.5 * (xyz[1:] + xyz[:-1])
    cot = 0.5 * (pz[1:] / np.maximum(pt[1:], 1e-12) + pz[:-1] / np.maximum(pt[:-1], 1e-12))
    return FieldSamples(r=np.hypot(mid[use, 0], mid[use, 1]), z=mid[use, 2],
                        cot_theta=cot[use], bz=bz[use])


#: Bins of the field check: the tracker's barrel and endcaps in |z|, all radii together.
CHECK_Z_EDGES = np.array([0.0, 600.0, 1200.0, 2000.0, 3100.0])


def field_check(samples: FieldSamples, field: Field | float, tolerance: float = 0.05,
                min_samples: int = 10) -> dict[str, Any]:
    """Whether the truth's field agrees with ``field``, the one the reconstruction propagates in
    (the detector's solenoid, ``taas.tracking.field.field_of``; a number: uniform Bz): per |z|
    bin with ``min_samples`` samples, the median measured Bz and the median of measured minus
    predicted, off where that exceeds ``tolerance`` of the field's largest value (absolute, so
    that the near-zero field beyond a solenoid's ends is judged in tesla, not as a ratio). A 5%
    error in the field moves a 1 GeV track's outermost hit by millimetres, far beyond the CKF's
    chi2 window."""
    field = UniformField(field) if isinstance(field, int | float) else field
    xyz = np.stack([samples.r, np.zeros(len(samples)), samples.z], axis=1)
    predicted = np.broadcast_to(field.effective_bz(xyz, samples.cot_theta), (len(samples),))
    residual = FieldSamples(samples.r, samples.z, samples.cot_theta, samples.bz - predicted)
    edges = np.array([0.0, np.inf])
    rows = samples.binned(edges, CHECK_Z_EDGES, min_samples)
    for row, diff in zip(rows, residual.binned(edges, CHECK_Z_EDGES, min_samples), strict=True):
        row["residual_median"] = diff["bz_median"]
    limit = tolerance * field.max_bz
    off = [row for row in rows if abs(row["residual_median"]) > limit]
    return {"assumed_field": repr(field), "assumed_bz": field.max_bz, "tolerance": tolerance,
            "samples": len(samples), "bins": rows, "agrees": not off}


def fit_solenoid(samples: FieldSamples) -> SolenoidField:
    """The ``SolenoidField`` (centre field, half length, fall-off) whose effective field
    ``Bz - cot(theta) Br`` best matches the samples (robust least squares: scattering and
    energy loss give the samples long tails)."""
    from scipy.optimize import least_squares

    if len(samples) < 10:
        raise ValueError(f"fit_solenoid needs at least 10 samples, got {len(samples)}")
    xyz = np.stack([samples.r, np.zeros(len(samples)), samples.z], axis=1)

    def residual(p: np.ndarray) -> np.ndarray:
        field = SolenoidField(float(p[0]), float(p[1]), float(p[2]))
        return field.effective_bz(xyz, samples.cot_theta) - samples.bz

    start = [float(np.median(samples.bz[np.abs(samples.z) < 600])), 2000.0, 600.0]
    fit = least_squares(residual, start, loss="soft_l1", f_scale=0.1,
                        bounds=([0.1, 100.0, 10.0], [10.0, 10000.0, 5000.0]))
    return SolenoidField(*(float(v) for v in fit.x))
