"""Evaluate saved reconstruction outputs against the events' truth (``taas evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.edm import Particles, Tracks
from taas.edm.lookup import find_rows
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.metrics.config import MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events, write_metrics
from taas.metrics.matching import match_tracks
from taas.metrics.plots import write_plots
from taas.metrics.resolution import pulls
from taas.metrics.trackml_score import hit_track_labels, trackml_score
from taas.metrics.truth_link import measurement_particles, particle_measurement_counts
from taas.pipeline.reconstruct import load_reco, reco_path
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


def evaluate_run(events: str | Path, tracks: str | Path, out: str | Path,
                 config: MatchingConfig | None = None, *,
                 detector: str | Path | None = None) -> dict[str, Any]:
    """Metrics of every reconstructed event; writes metrics.json and plots into ``out``.

    Beyond the rates: perigee pulls of matched fitted tracks against the particles' true
    parameters, and the TrackML score for TrackML input (its truth carries the hit weights).
    """
    dataset = open_dataset(events, detector=detector)
    config = config or MatchingConfig()
    per_event = []
    for event_id in dataset.event_ids:
        if not reco_path(Path(tracks), event_id).is_file():
            raise InputError(f"no reconstruction output for event {event_id}",
                             path=reco_path(Path(tracks), event_id))
        event = dataset.read(event_id)
        reco = load_reco(tracks, event_id)
        n_meas = len(reco["measurements.local_u"])
        particle_of = measurement_particles(event.cells["hit_id"], reco["clusters.cluster_id"],
                                            n_meas, event.hits)
        offsets, indices = track_lists(reco)
        score = None
        if event.source == "trackml":
            labels = hit_track_labels(offsets, indices, n_meas, cell_hit_id=event.cells["hit_id"],
                                      cell_cluster_id=reco["clusters.cluster_id"],
                                      hits=event.hits)
            score = trackml_score(labels, event.hits["particle_id"], event.hits["weight"])
        per_event.append(evaluate_event(
            offsets, indices, particle_of, event.particles, config, event_id=event_id,
            track_pulls=matched_track_pulls(reco, event.detector, particle_of, event.particles,
                                            config),
            trackml_score=score))
    summary = evaluate_events(per_event)
    out = Path(out)
    write_metrics(summary, out)
    write_plots(summary, out)
    return summary
