"""Evaluate saved reconstruction outputs against the events' truth (``taas evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.metrics.config import MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events, write_metrics
from taas.metrics.plots import write_plots
from taas.metrics.truth_link import measurement_particles
from taas.pipeline.reconstruct import load_reco, reco_path

#: Which saved tensors hold the final track list, best first.
TRACK_LISTS = (("tracks.meas_offsets", "tracks.meas_indices"),
               ("prototracks.offsets", "prototracks.indices"))


def track_lists(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The final tracks' measurement lists (fitted tracks, else proto-tracks)."""
    for offsets, indices in TRACK_LISTS:
        if offsets in tensors:
            return tensors[offsets], tensors[indices]
    raise InputError(f"no track list in the saved tensors (looked for {TRACK_LISTS})")


def evaluate_run(events: str | Path, tracks: str | Path, out: str | Path,
                 config: MatchingConfig | None = None, *,
                 detector: str | Path | None = None) -> dict[str, Any]:
    """Metrics of every reconstructed event; writes metrics.json and plots into ``out``."""
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
        per_event.append(evaluate_event(offsets, indices, particle_of, event.particles, config,
                                        event_id=event_id))
    summary = evaluate_events(per_event)
    out = Path(out)
    write_metrics(summary, out)
    write_plots(summary, out)
    return summary
