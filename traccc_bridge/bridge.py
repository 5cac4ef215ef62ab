"""GNN proto-tracks -> CKF seeds with start parameters, in traccc's data model.

The GNN's track building gives proto-tracks: lists of measurement indices, unordered, possibly
with duplicates, several particles merged or one particle split. A combinatorial Kalman
filter needs, per track to find, a *seed*: start parameters with a covariance on a surface,
plus (in traccc) the event's measurements sorted by surface so that each surface's
measurements form one contiguous range. This module builds both:

1. ``sort_by_surface``: the permutation that sorts measurements by module key, and
   the offsets of each surface's range: traccc's measurement sorting. taas' CPU CKF groups by
   module itself; the order is what a traccc-layout consumer (GPU CKF, CSV export) needs.
2. ``seed_triplets``: per proto-track, three space points chosen as ACTS'
   ``ProtoTracksToParameters`` does: the space points (duplicates dropped) ordered along the
   track, at least ``min_layers`` distinct (volume, layer) pairs, the vertex z from a
   straight-line fit of z against r, and the triplet spread over the first, middle and last
   layer (the first space point of each). Space points are ordered by their distance from the
   origin rather than by r (as the fitter does): on endcap disks r barely grows along the
   track, the distance always does.
3. ``triplet_starts``: bound parameters on the bottom space point's module from
   ``taas.tracking.estimation.estimate_parameters`` (the helix estimate every taas seed uses)
   with traccc's initial covariance (``traccc_covariance``); or ``fit_starts``: the Kalman fit
   of the whole proto-track (``taas.tracking.fitter.fit_prototracks``), its covariance
   inflated by traccc's ``covariance_inflation_factor`` so that the CKF, which collects the
   measurements again, does not count them twice.

4. ``supplementary_seeds``: the GNN loses a few particles altogether (no proto-track, or
   one merged into another particle's); taas' triplet seeding (``taas.seeding``) finds their
   seeds, run on the space points that no seeded proto-track lists (``uncovered``: a fraction
   of the cost of seeding the whole event) or on all of them (``all``: also the particles
   whose hits a wrong proto-track took). They rank after every proto-track seed, so the CKF's
   seed deduplication drops those on tracks already found.

``seed_prototracks`` chains these into ``BridgeOutput``: ``Seeds`` (the triplets; quality =
proto-track length, so longer proto-tracks are searched first and the CKF's seed deduplication
skips the fragments of a particle already found; supplementary seeds rank after all of them),
``SeedStarts`` and each seed's proto-track measurement list (for the CKF's ``constrained``
mode; empty for supplementary seeds, which then see every measurement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import ProtoTracks, Seeds
from taas.seeding.config import SeedingConfig
from taas.seeding.shapes import spacepoint_shapes
from taas.seeding.triplets import find_seeds
from taas.tracking.ckf import SeedStarts
from taas.tracking.estimation import estimate_parameters
from taas.tracking.fitter import check_prototracks, fit_prototracks
from taas.tracking.parameters import QOP, THETA
from traccc_bridge.config import TracccSeedingConfig


def sort_by_surface(module_key: np.ndarray, local_u: np.ndarray, local_v: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, surfaces, offsets)``: measurement rows sorted by module key, the distinct
    module keys ascending, and ``offsets`` (n_surfaces + 1) such that surface i's measurements
    are ``order[offsets[i]:offsets[i + 1]]``. Within a surface, by local u then v: the order
    then depends on the measurements, not on the rows they came in."""
    module_key = np.asarray(module_key, np.uint64)
    order = np.lexsort((local_v, local_u, module_key))
    surfaces, counts = np.unique(module_key[order], return_counts=True)
    offsets = np.zeros(len(surfaces) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return order, surfaces, offsets


def unique_lists(offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR lists with repeated entries of a list dropped (first occurrence kept, order
    otherwise unchanged)."""
    n = len(offsets) - 1
    track = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    span = int(indices.max()) + 1 if len(indices) else 1
    _, first = np.unique(track * span + indices, return_index=True)
    keep = np.zeros(len(indices), bool)
    keep[first] = True
    new_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(track[keep], minlength=n), out=new_offsets[1:])
    return new_offsets, indices[keep]


def layer_keys(detector: Detector, rows: np.ndarray) -> np.ndarray:
    """One integer per (volume, layer) of each module row (the detector's module table)."""
    volume = detector.modules["volume_id"][rows].astype(np.int64)
    n_layers = int(detector.modules["layer_id"].max(initial=0)) + 1
    return volume * n_layers + detector.modules["layer_id"][rows]


@numba.njit(cache=True)
def _triplet_layers(k: int, n: int) -> tuple[int, int, int]:
    """Positions (among a proto-track's n layers, in order) of its k-th seed triplet:
    0 first / middle / last (ACTS); 1 the inner half's ends and middle; 2 the outer half's;
    k >= 3 the (k - 2)-th layer from either end and the one midway."""
    half = (n - 1) // 2
    if k == 0:
        return 0, n // 2, n - 1
    if k == 1:
        return 0, half // 2, half
    if k == 2:
        return half, (half + n) // 2, n - 1
    j = k - 2
    return j, n // 2, n - 1 - j


@numba.njit(cache=True)
def _triplets(offsets: np.ndarray, sp_lists: np.ndarray, distance: np.ndarray,
              layer: np.ndarray, r: np.ndarray, z: np.ndarray, min_layers: int,
              n_triplets: int) -> tuple[np.ndarray, np.ndarray]:
    """Per list: triplets of space points and the vertex z (``seed_triplets``)."""
    n = len(offsets) - 1
    out = np.full((n, n_triplets, 3), -1, np.int64)
    z_vertex = np.full(n, np.nan)
    for t in range(n):
        sps = sp_lists[offsets[t]:offsets[t + 1]]
        if len(sps) < min_layers:
            continue
        sps = sps[np.argsort(distance[sps], kind="mergesort")]
        # the first space point of each distinct layer, in order along the track
        firsts = np.empty(len(sps), np.int64)
        n_layers = 0
        for i in range(len(sps)):
            seen = False
            for j in range(n_layers):
                if layer[firsts[j]] == layer[sps[i]]:
                    seen = True
                    break
            if not seen:
                firsts[n_layers] = sps[i]
                n_layers += 1
        if n_layers < min_layers:
            continue
        for k in range(n_triplets):
            bottom, middle, top = _triplet_layers(k, n_layers)
            if bottom < middle < top:
                out[t, k, 0] = firsts[bottom]
                out[t, k, 1] = firsts[middle]
                out[t, k, 2] = firsts[top]
        # vertex z: straight line z = z0 + b r through all space points
        rm, zm = r[sps].mean(), z[sps].mean()
        srr = ((r[sps] - rm) ** 2).sum()
        slope = ((r[sps] - rm) * (z[sps] - zm)).sum() / srr if srr > 0 else 0.0
        z_vertex[t] = zm - slope * rm
    return out, z_vertex


def seed_triplets(prototracks: ProtoTracks, spacepoints: Spacepoints,
                  measurement_layer: np.ndarray, min_layers: int = 3, n_triplets: int = 1,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(triplets (n, n_triplets, 3), z_vertex (n,))`` per proto-track: space point rows of
    the bottom, middle and top space points (-1 where the proto-track has fewer than
    ``min_layers`` distinct layers among its space points) and the line-fit vertex z (NaN
    there). Triplet 0 takes the first, middle and last layer (ACTS); triplet 1 the inner half
    of the layers (first, middle, last of it), triplet 2 the outer half, triplet k >= 3 the
    (k - 2)-th layer from either end and the one midway (-1 where a triplet has no three
    distinct layers). A GNN proto-track that picked up a wrong hit at either end, or followed
    another particle for its last (first) layers, thus keeps a clean triplet.

    ``measurement_layer``: each measurement's (volume, layer) key (``layer_keys``).
    Measurements without a space point are ignored; repeated measurements count once.
    """
    n_measurements = len(measurement_layer)
    offsets = prototracks["offsets"] if len(prototracks) else np.zeros(1, np.int64)
    sp_of = np.full(n_measurements, -1, np.int64)
    sp_of[spacepoints["measurement_index"]] = np.arange(len(spacepoints))
    offsets, indices = unique_lists(offsets, prototracks["indices"])
    sps = sp_of[indices]
    has = sps >= 0
    track = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    sp_offsets = np.zeros(len(offsets), np.int64)
    np.cumsum(np.bincount(track[has], minlength=len(offsets) - 1), out=sp_offsets[1:])
    xyz = np.stack([spacepoints["x"], spacepoints["y"], spacepoints["z"]], axis=1)
    layer = np.asarray(measurement_layer, np.int64)[spacepoints["measurement_index"]]
    return _triplets(sp_offsets, sps[has], np.linalg.norm(xyz, axis=1), layer,
                     np.asarray(spacepoints["r"], float), np.asarray(spacepoints["z"], float),
                     min_layers, n_triplets)


def traccc_covariance(params: np.ndarray, config: TracccSeedingConfig) -> np.ndarray:
    """traccc's (and ACTS' ``estimateTrackParamCovariance``) initial covariance (n, 6, 6).

    Diagonal: ``initial_sigma`` squared; q/p gets three terms, the q/pT resolution
    ``initial_sigma_qopt sin(theta)``, the theta error propagated into q/p
    ``sigma_theta q/p / tan(theta)``, and ``initial_sigma_pt_rel q/p``; each variance is then
    multiplied by ``initial_inflation``.
    """
    params = np.asarray(params, float)
    sigma = np.asarray(config.initial_sigma, float)
    var = np.broadcast_to(sigma**2, (len(params), 6)).copy()
    qop, theta = params[:, QOP], params[:, THETA]
    var[:, QOP] += ((config.initial_sigma_qopt * np.sin(theta)) ** 2
                    + var[:, THETA] * (qop / np.tan(theta)) ** 2
                    + (config.initial_sigma_pt_rel * qop) ** 2)
    var *= np.asarray(config.initial_inflation, float)
    cov = np.zeros((len(params), 6, 6))
    cov[:, np.arange(6), np.arange(6)] = var
    return cov


def triplet_starts(detector: Detector, measurements: Measurements, spacepoints: Spacepoints,
                   triplets: np.ndarray, config: TracccSeedingConfig,
                   measurement_rows: np.ndarray | None = None) -> SeedStarts:
    """Start parameters on each triplet's bottom module: the helix estimate through the three
    space points, traccc's initial covariance. ``measurement_rows``: the measurements' module
    rows, if known."""
    xyz = np.stack([spacepoints["x"], spacepoints["y"], spacepoints["z"]], axis=1)[triplets]
    bottom = spacepoints["measurement_index"][triplets[:, 0]]
    keys = measurements["module_key"][bottom]
    rows = (detector.index_of(keys) if measurement_rows is None
            else measurement_rows[bottom])
    if len(triplets) == 0:
        return SeedStarts(keys, np.zeros((0, 6)), np.zeros((0, 6, 6)))
    params, _ = estimate_parameters(xyz, detector.center[rows], detector.rotation[rows],
                                    config.bz)
    return SeedStarts(keys, params, traccc_covariance(params, config))


def fit_starts(detector: Detector, measurements: Measurements, prototracks: ProtoTracks,
               config: TracccSeedingConfig) -> tuple[SeedStarts, np.ndarray]:
    """Start parameters from the Kalman fit of each proto-track (on its first measurement's
    module), covariance times ``covariance_inflation_factor``; with a mask of the
    proto-tracks whose fit succeeded and passed the fitting config's momentum cuts."""
    fitting = config.fitting()
    tracks, fitted = fit_prototracks(detector, measurements, prototracks,
                                     fitting.track_fit_config())
    n = len(prototracks)
    keys, params = np.zeros(n, np.uint64), np.full((n, 6), np.nan)
    cov = np.zeros((n, 6, 6))
    keys[fitted], params[fitted] = tracks["module_key"], tracks["params"]
    cov[fitted] = tracks["covariance"] * fitting.covariance_inflation_factor
    ok = np.zeros(n, bool)
    ok[fitted] = passes_momentum_cuts(tracks["params"], fitting.min_p, fitting.min_pT)
    return SeedStarts(keys, params, cov), ok


def supplementary_seeds(detector: Detector, measurements: Measurements,
                        spacepoints: Spacepoints, covered: np.ndarray,
                        config: SeedingConfig) -> Seeds:
    """Triplet seeds among the space points not ``covered`` (mask); indices are rows of
    ``spacepoints``; quality shifted below 0 (after every proto-track seed), order kept."""
    rest = np.flatnonzero(~covered)
    subset = spacepoints.take(rest)
    shapes = (spacepoint_shapes(detector, measurements, subset)
              if config.cluster_shape_cut else None)
    seeds = find_seeds(subset, config, shapes=shapes)
    quality = seeds["quality"].astype(np.float64)
    if len(quality):
        quality = quality - quality.max() - 1.0
    return Seeds(spacepoints=rest[seeds["spacepoints"]], quality=quality.astype(np.float32),
                 z_vertex=seeds["z_vertex"])


def passes_momentum_cuts(params: np.ndarray, min_p: float, min_pt: float) -> np.ndarray:
    """Mask of bound parameters with p >= ``min_p`` and pT >= ``min_pt`` (GeV)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 / np.abs(params[:, QOP])
        return (p >= min_p) & (p * np.sin(params[:, THETA]) >= min_pt)


#: Seed quality per triplet rank: a proto-track's k-th triplet ranks after every proto-track's
#: (k-1)-th, so that it runs in a later CKF batch, when the seed deduplication can skip it if
#: an earlier triplet found the track. Within a rank, longer proto-tracks first.
_TIER = 1.0e4


@dataclass
class BridgeOutput:
    """What the CKF needs from the proto-tracks.

    ``prototrack``: per seed, the proto-track it came from (-1: a supplementary seed);
    ``seed_offsets`` /
    ``seed_indices``: per seed, its proto-track's measurements (repeats dropped);
    ``surface_order`` / ``surface_offsets`` / ``surfaces``: ``sort_by_surface``.
    """

    seeds: Seeds
    starts: SeedStarts
    prototrack: np.ndarray
    seed_offsets: np.ndarray
    seed_indices: np.ndarray
    surface_order: np.ndarray
    surfaces: np.ndarray
    surface_offsets: np.ndarray


def seed_prototracks(detector: Detector, measurements: Measurements,
                     spacepoints: Spacepoints, prototracks: ProtoTracks,
                     config: TracccSeedingConfig | None = None) -> BridgeOutput:
    """Proto-tracks -> up to ``seeds_per_prototrack`` seeds per proto-track with
    ``min_layers`` distinct layers (``seed_triplets``), then the supplementary seeds.

    With the ``fit`` method, every triplet of a proto-track starts from its fit, and a
    proto-track whose fit fails or misses the fitting momentum cuts gets no seed (its
    measurements do not form a track; the supplementary seeding may still find them).
    """
    config = config or TracccSeedingConfig()
    n_meas = len(measurements)
    check_prototracks(prototracks, n_meas)
    meas_rows = detector.index_of(measurements["module_key"])
    order, surfaces, surface_offsets = sort_by_surface(
        measurements["module_key"], measurements["local_u"], measurements["local_v"])
    triplets, z_vertex = seed_triplets(
        prototracks, spacepoints, layer_keys(detector, meas_rows),
        config.min_layers, config.seeds_per_prototrack)
    offsets = prototracks["offsets"] if len(prototracks) else np.zeros(1, np.int64)
    offsets, indices = unique_lists(offsets, prototracks["indices"])
    lengths = np.diff(offsets)
    usable = triplets[:, :, 0] >= 0
    if config.method == "fit":
        fit, fitted = fit_starts(detector, measurements,
                                 ProtoTracks(offsets=offsets, indices=indices), config)
        usable &= fitted[:, None]
    # every proto-track's first triplet, then every second one...: (triplet k, proto-track)
    rank, chosen = np.nonzero(usable.T)
    triplets = triplets[chosen, rank]
    if config.method == "fit":
        starts = SeedStarts(fit.module_key[chosen], fit.params[chosen], fit.covariance[chosen])
    else:
        starts = triplet_starts(detector, measurements, spacepoints, triplets, config,
                                meas_rows)
    quality = (config.seeds_per_prototrack - rank) * _TIER + lengths[chosen]
    seeds = Seeds(spacepoints=triplets, quality=quality.astype(np.float32),
                  z_vertex=z_vertex[chosen].astype(np.float32))
    sel_offsets = np.zeros(len(chosen) + 1, np.int64)
    np.cumsum(lengths[chosen], out=sel_offsets[1:])
    first = np.repeat(offsets[chosen] - sel_offsets[:-1], lengths[chosen])
    sel_indices = indices[first + np.arange(sel_offsets[-1])]
    prototrack = chosen
    if config.supplementary_seeding != "none":
        covered = np.zeros(n_meas, bool)
        if config.supplementary_seeding == "uncovered":
            covered[sel_indices] = True
        extra = supplementary_seeds(detector, measurements, spacepoints,
                                    covered[spacepoints["measurement_index"]], SeedingConfig())
        extra_starts = triplet_starts(detector, measurements, spacepoints,
                                      extra["spacepoints"], config, meas_rows)
        seeds = Seeds(**{k: np.concatenate([seeds[k], extra[k]]) for k in seeds.columns()})
        starts = SeedStarts(*(np.concatenate([a, b]) for a, b in zip(starts, extra_starts,
                                                                      strict=True)))
        prototrack = np.r_[chosen, np.full(len(extra), -1, np.int64)]
        sel_offsets = np.r_[sel_offsets, np.full(len(extra), sel_offsets[-1], np.int64)]
    return BridgeOutput(seeds, starts, prototrack, sel_offsets, sel_indices, order, surfaces,
                        surface_offsets)
