"""Evaluate saved reconstruction outputs against the events' truth (``taas evaluate``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.events.event import Event
from taas.metrics.config import MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events, write_metrics
from taas.metrics.field_probe import FieldSamples, field_check, field_samples
from taas.metrics.plots import write_plots
from taas.metrics.track_pulls import matched_track_pulls, track_lists
from taas.metrics.trackml_score import hit_track_labels, trackml_score
from taas.metrics.truth_link import measurement_particles
from taas.pipeline.reconstruct import load_reco, reco_path
from taas.reco.hit_spacepoints import truth_cell_hit_ids
from taas.tracking.ckf import CkfConfig
from taas.tracking.field import field_of

log = logging.getLogger(__name__)

#: The field every pipeline's track math propagates in (the CKF's, the fitter's, the seeding's).
ASSUMED_BZ = CkfConfig().bz


def evaluate_reco(event: Event, reco: dict[str, np.ndarray],
                  config: MatchingConfig | None = None) -> dict[str, Any]:
    """One event's counts and per-particle flags (``evaluate_event``) from its reconstruction
    output tensors ``reco`` (a run's saved outputs, or ``Pipeline.run(...).tensors``)."""
    config = config or MatchingConfig()
    n_meas = len(reco["measurements.local_u"])
    cell_hit_id = truth_cell_hit_ids(event)  # the hits', for events without cells
    particle_of = measurement_particles(cell_hit_id, reco["clusters.cluster_id"],
                                        n_meas, event.hits)
    offsets, indices = track_lists(reco)
    score = None
    if event.source == "trackml":
        labels = hit_track_labels(offsets, indices, n_meas, cell_hit_id=cell_hit_id,
                                  cell_cluster_id=reco["clusters.cluster_id"],
                                  hits=event.hits)
        score = trackml_score(labels, event.hits["particle_id"], event.hits["weight"])
    return evaluate_event(
        offsets, indices, particle_of, event.particles, config, event_id=event.event_id,
        track_pulls=matched_track_pulls(reco, event.detector, particle_of, event.particles,
                                        config),
        trackml_score=score)


def evaluate_run(events: str | Path, tracks: str | Path, out: str | Path,
                 config: MatchingConfig | None = None, *,
                 detector: str | Path | None = None) -> dict[str, Any]:
    """Metrics of every reconstructed event; writes metrics.json and plots into ``out``.

    Beyond the rates: perigee pulls of matched fitted tracks against the particles' true
    parameters, the TrackML score for TrackML input (its truth carries the hit weights), and
    ``field_from_truth``: whether the field the events were simulated in is the one the track
    math assumes (the detector's solenoid where it carries one, as the TrackML detector does,
    else uniform; ``taas.metrics.field_probe``), with a warning when not.
    """
    dataset = open_dataset(events, detector=detector)
    config = config or MatchingConfig()
    per_event, samples = [], []
    for event_id in dataset.event_ids:
        if not reco_path(Path(tracks), event_id).is_file():
            raise InputError(f"no reconstruction output for event {event_id}",
                             path=reco_path(Path(tracks), event_id))
        event = dataset.read(event_id)
        per_event.append(evaluate_reco(event, load_reco(tracks, event_id), config))
        samples.append(field_samples(event))
    summary = evaluate_events(per_event)
    assumed = field_of(dataset.detector, ASSUMED_BZ)
    summary["field_from_truth"] = check = field_check(FieldSamples.concat(samples), assumed)
    if not check["agrees"]:
        log.warning("%s: the events' truth shows a field other than the %r the reconstruction "
                    "assumes (Bz per |z| bin: %s); forward tracks will be lost",
                    events, assumed, ", ".join(
                        f"{b['abs_z_min']:.0f}-{b['abs_z_max']:.0f} mm: {b['bz_median']:.2f} T"
                        for b in check["bins"]))
    out = Path(out)
    write_metrics(summary, out)
    write_plots(summary, out)
    return summary
