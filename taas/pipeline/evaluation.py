"""Evaluate saved reconstruction outputs against the events' truth (``taas evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.metrics.config import MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events, write_metrics
from taas.metrics.plots import write_plots
from taas.metrics.track_pulls import matched_track_pulls, track_lists
from taas.metrics.trackml_score import hit_track_labels, trackml_score
from taas.metrics.truth_link import measurement_particles
from taas.pipeline.reconstruct import load_reco, reco_path
from taas.reco.hit_spacepoints import truth_cell_hit_ids


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
