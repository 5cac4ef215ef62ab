"""A hand-made event whose rates are worked out by hand (shared by the metrics tests).

Measurements 0-3: particle 1 (fiducial)        4-8: particle 2 (fiducial)
           9-12: particle 3 (fiducial)        13-16: particle 4 (pT 0.5 GeV: not fiducial)
          17-19: particle 5 (secondary)       20-23: noise

Tracks (two_way, >= 3 measurements per track):
  T0 [0,1,2,3]        particle 1, 4/4            reconstructs 1
  T1 [0,1,2]          particle 1, 3/4            reconstructs 1 again: a duplicate
  T2 [4,5,6,7,20]     particle 2, purity 0.8, fraction 0.8: reconstructs 2
  T3 [13,14,15,16]    particle 4: matched (not a fake) but particle 4 is not fiducial
  T4 [21,22,23]       noise: fake
  T5 [9,10]           too short: dropped from everything
  T6 [7,8,11,12]      2 + 2: purity 0.5, not matched: fake

  tracks counted 6, matched 4 -> fake rate 2/6
  fiducial particles 3 (1, 2, 3), reconstructed 2 -> efficiency 2/3
  reconstructing pairs with fiducial particles 3 -> duplicate rate (3 - 2) / 2 = 0.5
"""

from __future__ import annotations

import numpy as np

from taas.edm import Particles

TRACKS = [[0, 1, 2, 3], [0, 1, 2], [4, 5, 6, 7, 20], [13, 14, 15, 16], [21, 22, 23], [9, 10],
          [7, 8, 11, 12]]
MEASUREMENT_PARTICLE = np.array([1] * 4 + [2] * 5 + [3] * 4 + [4] * 4 + [5] * 3 + [0] * 4,
                                np.uint64)


def csr(tracks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """CSR offsets and indices of a list of measurement lists."""
    offsets = np.r_[0, np.cumsum([len(t) for t in tracks])].astype(np.int64)
    indices = np.array([i for t in tracks for i in t], np.int64)
    return offsets, indices


def make_particles(pt: list[float], eta: list[float], primary: list[bool],
                   ids: list[int] | None = None) -> Particles:
    """Particles with the given kinematics (phi = 0), vertices at the origin."""
    n = len(pt)
    pt_a = np.asarray(pt, np.float64)
    z = np.zeros(n)
    return Particles(
        particle_id=np.asarray(ids if ids is not None else np.arange(1, n + 1), np.uint64),
        particle_type=np.full(n, 211), q=np.ones(n), vx=z, vy=z, vz=z, vt=z,
        px=pt_a, py=z, pz=pt_a * np.sinh(np.asarray(eta, np.float64)),
        m=np.full(n, 0.13957), vertex_id=np.zeros(n, np.int64),
        primary=np.asarray(primary, bool), nhits=np.zeros(n, np.int32),
    )


def hand_particles() -> Particles:
    return make_particles(pt=[2.0, 10.0, 1.2, 0.6, 3.0], eta=[0.0, 1.0, -2.0, 0.5, 0.3],
                          primary=[True, True, True, True, False])
