"""Fitted tracks against truth: which saved tensors hold the final tracks, and the perigee
pulls of the fitted tracks matched to a particle.

Truth parameters are the particles' perigee parameters at their production vertex, expressed
with the same helix model the fit uses (``taas.tracking``), so that a pull measures the fit and
not a difference of conventions.
"""

from __future__ import annotations

import numpy as np

from taas.detector.detector import Detector
from taas.edm import Particles, Tracks
from taas.edm.lookup import find_rows
from taas.errors import InputError
from taas.metrics.config import MatchingConfig
from taas.metrics.matching import match_tracks
from taas.metrics.resolution import pulls
from taas.metrics.truth_link import particle_measurement_counts
from taas.tracking import helix
from taas.tracking.fitter import tracks_to_perigee
from taas.tracking.parameters import free_to_perigee

#: Which saved tensors hold the final track list, best first.
TRACK_LISTS = (("tracks.meas_offsets", "tracks.meas_indices"),
               ("prototracks.offsets", "prototracks.indices"))


def track_lists(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The final tracks' measurement lists (fitted tracks, else proto-tracks)."""
    for offsets, indices in TRACK_LISTS:
        if offsets in tensors:
            return tensors[offsets], tensors[indices]
    raise InputError(f"no track list in the saved tensors (looked for {TRACK_LISTS})")


def truth_perigee(particles: Particles, rows: np.ndarray, bz: float) -> np.ndarray:
    """Perigee parameters (d0, z0, phi, theta, q/p, t) of particles at their production vertex."""
    p = np.stack([particles["px"][rows], particles["py"][rows], particles["pz"][rows]], axis=1)
    momentum = np.linalg.norm(p, axis=1)
    free = np.zeros((len(rows), 8))
    free[:, helix.POS] = np.stack([particles["vx"][rows], particles["vy"][rows],
                                   particles["vz"][rows]], axis=1)
    free[:, helix.DIR] = p / momentum[:, None]
    free[:, helix.QOP] = particles["q"][rows] / momentum
    return free_to_perigee(free, bz)


def matched_track_pulls(reco: dict[str, np.ndarray], detector: Detector,
                        particle_of: np.ndarray, particles: Particles, config: MatchingConfig,
                        bz: float = 2.0) -> dict[str, dict[str, np.ndarray]] | None:
    """Perigee pulls of fitted tracks matched to a particle, or None without fitted tracks."""
    if "tracks.params" not in reco:
        return None
    tracks = Tracks.from_tensors(reco)
    ids = np.asarray(particles["particle_id"], np.uint64)
    match = match_tracks(tracks["meas_offsets"], tracks["meas_indices"], particle_of, ids,
                         particle_measurement_counts(particle_of, ids), config=config)
    matched = np.flatnonzero(match.matched)
    rows, _ = find_rows(ids, match.matched_particle[matched])  # matched particles exist
    charged = (particles["q"][rows] != 0) & (particles.pt[rows] > 0)
    matched, rows = matched[charged], rows[charged]
    fitted, cov = tracks_to_perigee(_subset(tracks, matched), detector, bz)
    return pulls(fitted, cov, truth_perigee(particles, rows, bz))


def _subset(tracks: Tracks, rows: np.ndarray) -> Tracks:
    """The tracks at ``rows`` (parameters only matter here; measurement lists are dropped)."""
    n = len(rows)
    return Tracks(module_key=tracks["module_key"][rows], params=tracks["params"][rows],
                  covariance=tracks["covariance"][rows], chi2=tracks["chi2"][rows],
                  ndf=tracks["ndf"][rows], meas_offsets=np.zeros(n + 1, np.int64),
                  meas_indices=np.zeros(0, np.int64))
