"""One entry point per event and one per run: the physics figures every pipeline is judged by.

``evaluate_event`` turns one event's tracks (CSR measurement lists, however they were made) and
its truth into counts and per-particle flags; ``evaluate_events`` adds events up *before*
dividing (a mean of per-event efficiencies would weight a 3-particle event like a 3000-particle
one) and returns a JSON-ready summary; ``write_metrics`` writes it as ``metrics.json`` with the
matching definition beside the numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taas.edm import Particles
from taas.errors import InputError
from taas.metrics.config import MatchingConfig
from taas.metrics.matching import match_tracks
from taas.metrics.rates import (
    ONE_SIGMA,
    Rate,
    binomial_rate,
    efficiency_histogram,
    fiducial_mask,
    particle_reconstructed,
    rate_counts,
    rates_from_counts,
)
from taas.metrics.resolution import summarize
from taas.metrics.truth_link import particle_measurement_counts

#: Default bins of efficiency vs pT (GeV): the turn-on below the usual 1 GeV cut stays visible.
PT_BINS = np.array([0.1, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0])
#: Pull histogram range and bins (pulls are unit Gaussians when the fit is right).
PULL_BINS = np.linspace(-5.0, 5.0, 51)
RATE_NAMES = ("efficiency", "fake_rate", "duplicate_rate")


def default_eta_bins(eta_max: float) -> np.ndarray:
    """Bins of about 0.25 in eta, reaching 0.5 beyond the fiducial cut to show the edge."""
    reach = eta_max + 0.5
    n = max(2, round(2 * reach / 0.25))
    return np.linspace(-reach, reach, n + 1)


def evaluate_event(offsets: np.ndarray, indices: np.ndarray, measurement_particle: np.ndarray,
                   particles: Particles, config: MatchingConfig | None = None, *,
                   particle_n_measurements: np.ndarray | None = None,
                   measurement_weight: np.ndarray | None = None,
                   track_pulls: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                   graph: Mapping[str, Any] | None = None,
                   trackml_score: float | None = None,
                   event_id: int | None = None) -> dict[str, Any]:
    """Counts and per-particle flags of one event (input to ``evaluate_events``).

    ``offsets``/``indices``: the tracks' measurement lists (CSR). ``measurement_particle``: the
    truth particle of each measurement (``truth_link.measurement_particles``).
    ``particle_n_measurements``: measurements per particle, aligned with ``particles``
    (default: counted from ``measurement_particle``). ``measurement_weight``: ATLAS pixel
    weighting of the purity (``matching.measurement_weights``). Optional extras are carried
    into the summary: ``track_pulls`` (``resolution.pulls`` of matched fitted tracks),
    ``graph`` (``graph.edge_metrics``) and ``trackml_score``.
    """
    config = config or MatchingConfig()
    ids = np.asarray(particles["particle_id"], np.uint64)
    if particle_n_measurements is None:
        n_meas = particle_measurement_counts(measurement_particle, ids)
    else:
        n_meas = np.asarray(particle_n_measurements, np.int64)
        if n_meas.shape != ids.shape:
            raise InputError(f"particle_n_measurements has {len(n_meas)} entries for "
                             f"{len(ids)} particles")
    match = match_tracks(offsets, indices, measurement_particle, ids, n_meas, config=config,
                         measurement_weight=measurement_weight)
    pt, eta, primary = particles.pt, particles.eta, particles["primary"]
    fiducial = fiducial_mask(pt, eta, primary, n_meas, config)
    no_pt = fiducial_mask(pt, eta, primary, n_meas, config, ignore=("pt",))
    no_eta = fiducial_mask(pt, eta, primary, n_meas, config, ignore=("eta",))
    loose = no_pt | no_eta
    reconstructed = particle_reconstructed(match, ids, config)
    counts = rate_counts(match, ids, fiducial, config)
    result: dict[str, Any] = {
        "event_id": event_id,
        "matching": config.to_dict(),
        "counts": counts,
        "particles": {
            "particle_id": ids[loose], "pt": pt[loose], "eta": eta[loose],
            "reconstructed": reconstructed[loose], "fiducial": fiducial[loose],
            "fiducial_except_pt": no_pt[loose], "fiducial_except_eta": no_eta[loose],
        },
        "rates": {k: v.to_dict() for k, v in rates_from_counts(counts).items()},
    }
    if track_pulls is not None:
        result["pulls"] = {name: {kind: np.asarray(a, np.float64) for kind, a in kinds.items()}
                           for name, kinds in track_pulls.items()}
    if graph is not None:
        result["graph"] = dict(graph)
    if trackml_score is not None:
        result["trackml_score"] = float(trackml_score)
    return result


def _sum_rates(rates: Sequence[Rate], cl: float) -> Rate:
    return binomial_rate(sum(r.numerator for r in rates), sum(r.denominator for r in rates), cl)


def _hist_to_lists(h: Mapping[str, np.ndarray]) -> dict[str, list[Any]]:
    return {k: _clean(v) for k, v in h.items()}


def evaluate_events(results: Sequence[Mapping[str, Any]], *, pt_bins: np.ndarray | None = None,
                    eta_bins: np.ndarray | None = None,
                    cl: float = ONE_SIGMA) -> dict[str, Any]:
    """Aggregate ``evaluate_event`` results into one JSON-ready summary.

    Top-level keys: ``efficiency``, ``fake_rate``, ``duplicate_rate`` (values) with
    ``<name>_err_low`` / ``<name>_err_high`` (1-sigma interval half-widths), ``rates`` (full
    interval records), every count (``n_tracks``, ``n_fiducial_particles``, ...), ``n_events``,
    ``matching`` (the config), ``efficiency_vs_pt`` / ``efficiency_vs_eta`` histograms, and
    when given ``pulls``, ``graph``, ``trackml_score``.
    """
    if not results:
        raise InputError("evaluate_events: no event results")
    matching = results[0]["matching"]
    if any(r["matching"] != matching for r in results):
        raise InputError("evaluate_events: events were evaluated with different matching configs")
    config = MatchingConfig.from_dict(matching)
    counts = {k: int(sum(r["counts"][k] for r in results)) for k in results[0]["counts"]}
    rates = rates_from_counts(counts, cl)
    summary: dict[str, Any] = {"n_events": len(results), "matching": dict(matching), **counts}
    for name in RATE_NAMES:
        d = rates[name].to_dict()
        summary[name] = d["value"]
        summary[f"{name}_err_low"] = d["err_low"]
        summary[f"{name}_err_high"] = d["err_high"]
    summary["rates"] = {k: v.to_dict() for k, v in rates.items()}
    summary["confidence_level"] = cl

    parts = {k: np.concatenate([np.asarray(r["particles"][k]) for r in results])
             for k in results[0]["particles"]}
    sel = parts["fiducial_except_pt"]
    summary["efficiency_vs_pt"] = _hist_to_lists(efficiency_histogram(
        parts["pt"][sel], parts["reconstructed"][sel],
        PT_BINS if pt_bins is None else pt_bins, cl))
    sel = parts["fiducial_except_eta"]
    summary["efficiency_vs_eta"] = _hist_to_lists(efficiency_histogram(
        parts["eta"][sel], parts["reconstructed"][sel],
        default_eta_bins(config.eta_max) if eta_bins is None else eta_bins, cl))

    with_pulls = [r["pulls"] for r in results if "pulls" in r]
    if with_pulls:
        merged = {name: {kind: np.concatenate([p[name][kind] for p in with_pulls])
                         for kind in with_pulls[0][name]} for name in with_pulls[0]}
        stats = summarize(merged)
        for name, kinds in merged.items():
            pull = kinds["pull"][np.isfinite(kinds["pull"])]
            stats[name]["pull_hist"] = _clean(np.histogram(pull, PULL_BINS)[0])
        summary["pulls"] = stats
        summary["pull_bins"] = _clean(PULL_BINS)
    with_graph = [r["graph"] for r in results if "graph" in r]
    if with_graph:
        g: dict[str, Any] = {k: int(sum(x[k] for x in with_graph))
                             for k in ("n_edges", "n_true_edges", "n_truth_edges")}
        for k in ("efficiency", "purity", "target_efficiency"):
            if all(k in x for x in with_graph):
                g[k] = _sum_rates([x[k] for x in with_graph], cl).to_dict()
        summary["graph"] = g
    scores = [r["trackml_score"] for r in results if "trackml_score" in r]
    if scores:
        summary["trackml_score"] = float(np.mean(scores))
        summary["trackml_score_per_event"] = scores
    return summary


def _clean(x: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, NaN and inf to None."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return [_clean(v) for v in x.tolist()]
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, Rate):
        return x.to_dict()
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_metrics(summary: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``summary`` as ``<out_dir>/metrics.json`` (strict JSON: NaN written as null)."""
    required = ("efficiency", "fake_rate", "duplicate_rate", "n_tracks",
                "n_fiducial_particles", "matching")
    missing = [k for k in required if k not in summary]
    if missing:
        raise InputError(f"write_metrics: summary lacks {missing}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean(summary), indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return path
