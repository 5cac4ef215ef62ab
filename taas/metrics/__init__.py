"""Physics evaluation shared by every pipeline: truth matching, rates, graphs, fits, TrackML.

Modules, one job each: ``truth_link`` (which particle made each measurement), ``config``
(matching style and cuts), ``matching`` (track-particle matching), ``rates`` (efficiency, fake
and duplicate rates with intervals), ``resolution`` (pulls), ``graph`` (edge efficiency and
purity), ``trackml_score`` (the challenge score), ``evaluate`` (per event and per run, and
``metrics.json``), ``plots`` (PNGs from a summary).
"""

from taas.metrics.config import STYLES, MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events, write_metrics
from taas.metrics.graph import edge_metrics, edge_truth, truth_edges
from taas.metrics.matching import MatchResult, match_tracks, measurement_weights
from taas.metrics.rates import Rate, binomial_interval, efficiency_histogram
from taas.metrics.resolution import pulls, summarize
from taas.metrics.trackml_score import hit_track_labels, trackml_score, trackml_score_hits
from taas.metrics.truth_link import measurement_particles, particle_measurement_counts

__all__ = [
    "STYLES", "MatchResult", "MatchingConfig", "Rate", "binomial_interval", "edge_metrics",
    "edge_truth", "efficiency_histogram", "evaluate_event", "evaluate_events", "hit_track_labels",
    "match_tracks", "measurement_particles", "measurement_weights", "particle_measurement_counts",
    "pulls", "summarize", "trackml_score", "trackml_score_hits", "truth_edges", "write_metrics",
]
