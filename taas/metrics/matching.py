"""Truth matching of tracks to particles, in the three styles the tracking literature uses.

Inputs are independent of how tracks were made: track measurement lists in CSR form (as in
``ProtoTracks`` / ``Tracks``), the truth particle of every measurement
(``taas.metrics.truth_link.measurement_particles``) and the number of measurements each particle
left in the event.

For every (track, particle) pair sharing measurements we compute

* ``purity`` = (weighted) shared measurements / (weighted) measurements on the track
  (the ATLAS "truth matching probability", ACTS "truth matching probability", ACORN
  ``purity_reco``). Weights are 1 unless given; ATLAS counts a pixel measurement twice
  (``measurement_weights``).
* ``particle_fraction`` = shared measurements / measurements of the particle in the event
  (ACORN ``eff_true``).

With ``f`` the matching fraction (default 0.5, compared strictly: ``> f``), the styles decide
two things separately, following ACORN's ``evaluate_labelled_graph`` (acorn
``stages/track_building/utils.py``; docs "Track Matching Definitions" of
HSF-reco-and-software-triggers/Tracking-ML-Exa.TrkX) and ACTS ``TrackTruthMatcher``
(``doubleMatching``) / ``TrackFinderPerformanceWriter``:

* the track side, "matched" (a track that is not matched is a fake), and
* the particle side, "reconstructs" (a fiducial particle with a reconstructing track counts
  towards the efficiency; extra reconstructing tracks are duplicates).

* ``ATLAS``:   matched = reconstructs = purity(P) > f. ATLAS's truth-matching probability;
  ACTS with ``doubleMatching=false``.
* ``one_way``: matched = purity(P) > f; reconstructs = particle_fraction(P) > f.
* ``two_way``: matched = reconstructs = purity(P) > f and particle_fraction(P) > f. ACTS
  ``doubleMatching=true``, the TrackML "double majority".

The comparison is strict, as in ACORN (which nudges 0.5 up by 1e-6) and TrackML; ACTS compares
with ``>=``, which differs only for fractions exactly equal to ``f`` (e.g. 2 of 4).

Since ``f >= 0.5`` a track is matched to at most one particle: its majority particle. Under
``one_way`` a track can reconstruct a particle without being pure (a track holding 4 of the
particle's 5 measurements plus 6 measurements of others reconstructs it, yet is a fake).
Noise (particle 0) never matches anything: a track made of noise is a fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taas.edm.lookup import find_rows
from taas.errors import InputError
from taas.metrics.config import MatchingConfig


def check_csr(offsets: np.ndarray, indices: np.ndarray, n_measurements: int | None = None,
              *, what: str = "tracks") -> tuple[np.ndarray, np.ndarray]:
    """Validate a CSR measurement list (offsets from 0, non-decreasing, ending at len(indices))."""
    offsets = np.asarray(offsets, np.int64)
    indices = np.asarray(indices, np.int64)
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 \
            or offsets[-1] != len(indices) or np.any(np.diff(offsets) < 0):
        raise InputError(f"{what}: offsets must start at 0, not decrease and end at "
                         f"len(indices)={len(indices)}")
    if n_measurements is not None and len(indices) and (
            indices.min() < 0 or indices.max() >= n_measurements):
        raise InputError(f"{what}: measurement index outside 0..{n_measurements - 1}")
    return offsets, indices


def measurement_weights(is_pixel: np.ndarray | None, pixel_weight: float,
                        n_measurements: int) -> np.ndarray:
    """Per-measurement weights for the ATLAS matching probability.

    ATLAS weighs a pixel measurement ``pixel_weight`` (2 in ATLAS) times a strip one, because a
    pixel cluster constrains two coordinates. Without ``is_pixel`` every weight is 1.
    """
    if is_pixel is None:
        return np.ones(n_measurements)
    is_pixel = np.asarray(is_pixel, bool)
    if is_pixel.shape != (n_measurements,):
        raise InputError(f"is_pixel has shape {is_pixel.shape}, expected ({n_measurements},)")
    return np.where(is_pixel, float(pixel_weight), 1.0)


@dataclass(frozen=True)
class MatchResult:
    """Track-particle matching of one event.

    Per track (length n_tracks): ``n_measurements``, ``majority_particle`` (0 when the track
    holds only noise), ``majority_hits`` (its shared measurements), ``purity`` and
    ``particle_fraction`` of the majority particle, ``matched`` (track side; False = fake) and
    ``matched_particle`` (0 when not matched).

    Per (track, particle) pair with at least one shared measurement, noise excluded
    (``pair_*``, sorted by track then particle): ``pair_track``, ``pair_particle``,
    ``pair_shared``, ``pair_purity``, ``pair_particle_fraction``, ``pair_matched`` (track side)
    and ``pair_reconstructs`` (particle side).
    """

    style: str
    n_measurements: np.ndarray
    majority_particle: np.ndarray
    majority_hits: np.ndarray
    purity: np.ndarray
    particle_fraction: np.ndarray
    matched: np.ndarray
    matched_particle: np.ndarray
    pair_track: np.ndarray
    pair_particle: np.ndarray
    pair_shared: np.ndarray
    pair_purity: np.ndarray
    pair_particle_fraction: np.ndarray
    pair_matched: np.ndarray
    pair_reconstructs: np.ndarray

    @property
    def n_tracks(self) -> int:
        return len(self.n_measurements)


def _lookup_counts(particles: np.ndarray, particle_ids: np.ndarray,
                   particle_counts: np.ndarray) -> np.ndarray:
    rows, found = find_rows(particle_ids, particles)
    if not np.all(found):
        raise InputError(f"particle {particles[~found][0]} is on a track but has no measurement "
                         "count")
    return particle_counts[rows]


def _pairs(offsets: np.ndarray, indices: np.ndarray, measurement_particle: np.ndarray,
           w_meas: np.ndarray) -> tuple[np.ndarray, ...]:
    """(track, particle, shared count, shared weight, purity) of every pair; noise left out."""
    n_tracks = len(offsets) - 1
    entry_track = np.repeat(np.arange(n_tracks), np.diff(offsets))
    entry_particle = measurement_particle[indices]
    entry_w = w_meas[indices]
    track_w = np.bincount(entry_track, weights=entry_w, minlength=n_tracks)
    real = entry_particle != 0
    t, p, w = entry_track[real], entry_particle[real], entry_w[real]
    order = np.lexsort((p, t))
    t, p, w = t[order], p[order], w[order]
    starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (p[1:] != p[:-1])]) if len(t) \
        else np.zeros(0, np.int64)
    pair_track, pair_particle = t[starts], p[starts]
    pair_shared = np.diff(np.r_[starts, len(t)]).astype(np.int64)
    pair_w = np.add.reduceat(w, starts) if len(starts) else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pair_purity = np.where(track_w[pair_track] > 0, pair_w / track_w[pair_track], 0.0)
    return pair_track, pair_particle, pair_shared, pair_w, pair_purity


def match_tracks(offsets: np.ndarray, indices: np.ndarray, measurement_particle: np.ndarray,
                 particle_ids: np.ndarray, particle_n_measurements: np.ndarray,
                 *, config: MatchingConfig | None = None,
                 measurement_weight: np.ndarray | None = None) -> MatchResult:
    """Match every track to particles under ``config.style`` (see the module docstring).

    ``particle_ids`` / ``particle_n_measurements`` are aligned: the measurements each particle
    left in the event (``truth_link.particle_measurement_counts``). ``measurement_weight``
    (per measurement, default 1) enters only the purity.
    """
    config = config or MatchingConfig()
    measurement_particle = np.asarray(measurement_particle, np.uint64)
    n_meas = len(measurement_particle)
    offsets, indices = check_csr(offsets, indices, n_meas)
    particle_ids = np.asarray(particle_ids, np.uint64)
    particle_n_measurements = np.asarray(particle_n_measurements, np.int64)
    if particle_ids.shape != particle_n_measurements.shape:
        raise InputError("particle_ids and particle_n_measurements differ in length")
    w_meas = np.ones(n_meas) if measurement_weight is None \
        else np.asarray(measurement_weight, np.float64)
    if w_meas.shape != (n_meas,):
        raise InputError(f"measurement_weight has shape {w_meas.shape}, expected ({n_meas},)")

    n_tracks = len(offsets) - 1
    length = np.diff(offsets)
    pair_track, pair_particle, pair_shared, pair_w, pair_purity = _pairs(
        offsets, indices, measurement_particle, w_meas)
    counts = _lookup_counts(pair_particle, particle_ids, particle_n_measurements)
    if np.any(pair_shared > counts):
        bad = int(np.flatnonzero(pair_shared > counts)[0])
        raise InputError(f"track {pair_track[bad]} holds {pair_shared[bad]} measurements of "
                         f"particle {pair_particle[bad]}, which has only {counts[bad]}")
    pair_fraction = pair_shared / np.maximum(counts, 1)

    f = config.matching_fraction
    pure = pair_purity > f
    complete = pair_fraction > f
    if config.style == "ATLAS":
        pair_matched, pair_reconstructs = pure, pure
    elif config.style == "one_way":
        pair_matched, pair_reconstructs = pure, complete
    else:  # two_way
        pair_matched = pair_reconstructs = pure & complete

    # majority particle per track: largest weighted share, then smallest id
    majority_particle = np.zeros(n_tracks, np.uint64)
    majority_hits = np.zeros(n_tracks, np.int64)
    purity = np.zeros(n_tracks)
    fraction = np.zeros(n_tracks)
    if len(pair_track):
        best = np.lexsort((pair_particle, -pair_w, pair_track))
        first = best[np.r_[True, pair_track[best][1:] != pair_track[best][:-1]]]
        tr = pair_track[first]
        majority_particle[tr] = pair_particle[first]
        majority_hits[tr] = pair_shared[first]
        purity[tr] = pair_purity[first]
        fraction[tr] = pair_fraction[first]
    matched = np.zeros(n_tracks, bool)
    matched_particle = np.zeros(n_tracks, np.uint64)
    matched[pair_track[pair_matched]] = True
    matched_particle[pair_track[pair_matched]] = pair_particle[pair_matched]

    return MatchResult(
        style=config.style, n_measurements=length, majority_particle=majority_particle,
        majority_hits=majority_hits, purity=purity, particle_fraction=fraction,
        matched=matched, matched_particle=matched_particle,
        pair_track=pair_track, pair_particle=pair_particle, pair_shared=pair_shared,
        pair_purity=pair_purity, pair_particle_fraction=pair_fraction,
        pair_matched=pair_matched, pair_reconstructs=pair_reconstructs,
    )
