"""GNN proto-tracks -> CKF seeds with start parameters, in traccc's data model.

The GNN's track building gives proto-tracks: lists of measurement indices, unordered, possibly
with duplicates, several particles merged or one particle split. A combinatorial Kalman
filter needs, per track to find, a *seed*: start parameters with a covariance on a surface,
plus (in traccc) the event's measurements sorted by surface so that each surface's
measurements form one contiguous range. This module builds both:

1. ``sort_by_surface``: the permutation that sorts measurements by module, and the offsets
   of each surface's range: traccc's measurement sorting. taas' CPU CKF groups by
   module itself; the order is what a traccc-layout consumer (GPU CKF, CSV export) needs.
2. ``seed_triplets``: per proto-track, three space points chosen as ACTS'
   ``ProtoTracksToParameters`` does: the space points (duplicates dropped) ordered along the
   track, at least ``min_layers`` distinct (volume, layer) pairs, the vertex z from a
   straight-line fit of z against r, and the triplet spread over the first, middle and last
   layer (the first space point of each). Space points are ordered by their distance from the
   origin rather than by r (as the fitter does): on endcap disks r barely grows along the
   track, the distance always does.
3. ``triplet_starts``: bound parameters on the bottom space point's module from
   ``taas.tracking.estimation.helix_parameters`` (the helix estimate every taas seed uses)
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

Devices: the array work -- the surface sort, repeats dropped, the triplet choice over the CSR
lists, the vertex line fit, the helix estimate and the covariance -- is written once against
an array namespace (``ArrayOps``): numpy on the host (``HOST``, the cpu backend), torch on
CUDA or torch's CPU device in the gpu backend (``backends.gpu.prototrack_seeding``), whose
``upload`` / ``download`` count every host <-> device copy. On the host in either case, and
said where they happen: the input checks, the module lookup (``Detector.index_of``) and
(volume, layer) keys from the detector table, the ``fit`` method's Kalman fit (taas' CPU
fitter) and the supplementary seeding (taas' CPU triplet seeding), whose triplets go up to the
device for their estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import ProtoTracks, Seeds
from taas.seeding.config import SeedingConfig
from taas.seeding.shapes import spacepoint_shapes
from taas.seeding.triplets import find_seeds
from taas.tracking.arrays import HOST, Array, ArrayOps
from taas.tracking.ckf import SeedStarts
from taas.tracking.estimation import helix_parameters
from taas.tracking.fitter import check_prototracks, fit_prototracks
from taas.tracking.parameters import QOP, THETA
from traccc_bridge.config import TracccSeedingConfig


def _offsets(arrays: ArrayOps, counts: Array) -> Array:
    """CSR offsets (n + 1) of lists with ``counts`` entries."""
    xp = arrays.xp
    return xp.concatenate([arrays.full((1,), 0, xp.int64), xp.cumsum(counts, axis=0)])


def _list_of_entries(arrays: ArrayOps, offsets: Array) -> Array:
    """Per CSR entry, the list it belongs to."""
    return arrays.repeat(arrays.arange(len(offsets) - 1), arrays.xp.diff(offsets))


def _first_occurrences(arrays: ArrayOps, key: Array) -> Array:
    """Mask of the entries whose key no earlier entry has."""
    xp = arrays.xp
    by_key = arrays.stable_argsort(key)
    first = arrays.full((len(key),), False, xp.bool)
    first[by_key[arrays.run_starts(key[by_key])]] = True
    return first


def sort_by_surface(arrays: ArrayOps, rows: Array, local_u: Array, local_v: Array,
                    ) -> tuple[Array, Array, Array]:
    """``(order, surfaces, offsets)``: measurement indices sorted by module, the distinct
    modules' rows ascending, and ``offsets`` (n_surfaces + 1) such that surface i's
    measurements are ``order[offsets[i]:offsets[i + 1]]``. ``rows``: each measurement's row
    of the detector's module table, whose keys ascend, so the order is by module key. Within
    a surface, by local u then v: the order then depends on the measurements, not on the rows
    they came in. Arrays of ``arrays``' namespace, sorted where it works."""
    xp = arrays.xp
    order = arrays.lexsort((local_v, local_u, rows))
    ordered = rows[order]
    starts = arrays.flatnonzero(arrays.run_starts(ordered))
    offsets = xp.concatenate([starts, arrays.full((1,), len(order), xp.int64)])
    return order, ordered[starts], offsets


def unique_lists(offsets: Array, indices: Array, arrays: ArrayOps = HOST,
                 ) -> tuple[Array, Array]:
    """The CSR lists with repeated entries of a list dropped (first occurrence kept, order
    otherwise unchanged)."""
    track = _list_of_entries(arrays, offsets)
    span = int(indices.max()) + 1 if len(indices) else 1
    first = _first_occurrences(arrays, track * span + indices)
    counts = arrays.xp.bincount(track[first], minlength=len(offsets) - 1)
    return _offsets(arrays, counts), indices[first]


def layer_keys(detector: Detector, rows: np.ndarray) -> np.ndarray:
    """One integer per (volume, layer) of each module row (the detector's module table)."""
    volume = detector.modules["volume_id"][rows].astype(np.int64)
    n_layers = int(detector.modules["layer_id"].max(initial=0)) + 1
    return volume * n_layers + detector.modules["layer_id"][rows]


@dataclass
class SpacepointArrays:
    """An event's space points where the bridge works (``upload``), with what it needs per
    space point from the host's tables: ``rows`` (module row) and ``layer`` (``layer_keys``).
    Two copies: the floats (x, y, z, r) and the integers (measurement, row, layer)."""

    measurement_index: Array
    xyz: Array  #: (n, 3)
    r: Array
    layer: Array
    rows: Array
    sp_of: Array  #: per measurement, its space point (-1: none)
    n_layer_keys: int

    @classmethod
    def upload(cls, arrays: ArrayOps, spacepoints: Spacepoints, n_measurements: int,
               layer: np.ndarray, rows: np.ndarray) -> SpacepointArrays:
        floats = arrays.upload(np.stack([spacepoints["x"], spacepoints["y"], spacepoints["z"],
                                         spacepoints["r"]], axis=1))
        ints = arrays.upload(np.stack([spacepoints["measurement_index"],
                                       np.asarray(rows, np.int64),
                                       np.asarray(layer, np.int64)], axis=1))
        measurement_index = ints[:, 0]
        sp_of = arrays.full((n_measurements,), -1, arrays.xp.int64)
        sp_of[measurement_index] = arrays.arange(len(spacepoints))
        return cls(measurement_index, floats[:, :3], floats[:, 3], ints[:, 2], ints[:, 1], sp_of,
                   int(layer.max()) + 1 if len(layer) else 1)


def triplet_layers(k: int, n: Array) -> tuple[Array, Array, Array]:
    """Positions (among a proto-track's n layers, in order; ``n`` an array over
    proto-tracks) of its k-th seed triplet: 0 first / middle / last (ACTS); 1 the inner half's
    ends and middle; 2 the outer half's; k >= 3 the (k - 2)-th layer from either end and the
    one midway."""
    half = (n - 1) // 2
    if k == 0:
        return 0, n // 2, n - 1
    if k == 1:
        return 0, half // 2, half
    if k == 2:
        return half, (half + n) // 2, n - 1
    j = k - 2
    return j, n // 2, n - 1 - j


def choose_triplets(arrays: ArrayOps, offsets: Array, indices: Array, sp: SpacepointArrays,
                    min_layers: int, n_triplets: int) -> tuple[Array, Array]:
    """``seed_triplets`` on lists without repeats, where ``arrays`` works: the lists' space
    points ordered along each list by distance (stable, then by list), the first of each
    distinct layer, the triplets picked by ``triplet_layers``, and the vertex line fit, all as
    whole-event sorts, gathers and segment sums over the CSR entries (no loop per list)."""
    xp = arrays.xp
    n = len(offsets) - 1
    sps = sp.sp_of[indices]
    has = sps >= 0
    sps, track = sps[has], _list_of_entries(arrays, offsets)[has]
    # along each list by distance from the origin; the lists stay in order, so ``track``
    # still labels the reordered entries
    along = arrays.stable_argsort(xp.linalg.norm(sp.xyz[sps], axis=1))
    along = along[arrays.stable_argsort(track[along])]
    sps = sps[along]
    # the first space point of each distinct layer, in order along the list
    first = _first_occurrences(arrays, track * sp.n_layer_keys + sp.layer[sps])
    n_layers = xp.bincount(track[first], minlength=n)
    start = xp.cumsum(n_layers, axis=0) - n_layers
    firsts = xp.concatenate([sps[first], arrays.full((1,), -1, xp.int64)])  # last: "none"
    seeded = n_layers >= min_layers
    triplets = arrays.full((n, n_triplets, 3), -1, xp.int64)
    for k in range(n_triplets):
        positions = triplet_layers(k, n_layers)
        ok = seeded & (positions[0] < positions[1]) & (positions[1] < positions[2])
        for slot, position in enumerate(positions):
            triplets[:, k, slot] = firsts[xp.where(ok, start + position, len(firsts) - 1)]
    # vertex z: straight line z = z0 + b r through all of a list's space points
    count = xp.bincount(track, minlength=n)
    count = xp.where(count > 0, count, 1)
    r, z = sp.r[sps], sp.xyz[sps, 2]
    r_mean = arrays.segment_sum(r, track, n) / count
    z_mean = arrays.segment_sum(z, track, n) / count
    dr, dz = r - r_mean[track], z - z_mean[track]
    srr = arrays.segment_sum(dr * dr, track, n)
    slope = xp.where(srr > 0, arrays.segment_sum(dr * dz, track, n)
                     / xp.where(srr > 0, srr, 1.0), 0.0)
    return triplets, xp.where(seeded, z_mean - slope * r_mean, math.nan)


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
    (The host's entry; ``choose_triplets`` works on any ``ArrayOps``.)
    """
    offsets = prototracks["offsets"] if len(prototracks) else np.zeros(1, np.int64)
    offsets, indices = unique_lists(offsets, prototracks["indices"])
    sp_meas = spacepoints["measurement_index"]
    no_rows = np.zeros_like(sp_meas)  # module rows: only start parameters need them
    sp = SpacepointArrays.upload(HOST, spacepoints, len(measurement_layer),
                                 np.asarray(measurement_layer)[sp_meas], no_rows)
    triplets, z_vertex = choose_triplets(HOST, offsets, indices, sp, min_layers, n_triplets)
    return np.asarray(triplets), np.asarray(z_vertex)


def traccc_covariance(params: Array, config: TracccSeedingConfig, xp: ModuleType = np,
                      ) -> Array:
    """traccc's (and ACTS' ``estimateTrackParamCovariance``) initial covariance (n, 6, 6).

    Diagonal: ``initial_sigma`` squared; q/p gets three terms, the q/pT resolution
    ``initial_sigma_qopt sin(theta)``, the theta error propagated into q/p
    ``sigma_theta q/p / tan(theta)``, and ``initial_sigma_pt_rel q/p``; each variance is then
    multiplied by ``initial_inflation``. ``xp``: the namespace of ``params`` (numpy, torch).
    """
    params = xp.asarray(params, dtype=xp.float64)
    device = params.device
    sigma = xp.asarray(config.initial_sigma, dtype=xp.float64, device=device)
    var = xp.zeros_like(params) + sigma**2
    qop, theta = params[:, QOP], params[:, THETA]
    var[:, QOP] += ((config.initial_sigma_qopt * xp.sin(theta)) ** 2
                    + var[:, THETA] * (qop / xp.tan(theta)) ** 2
                    + (config.initial_sigma_pt_rel * qop) ** 2)
    var *= xp.asarray(config.initial_inflation, dtype=xp.float64, device=device)
    cov = xp.zeros((len(params), 6, 6), dtype=xp.float64, device=device)
    diagonal = xp.arange(6, device=device)
    cov[:, diagonal, diagonal] = var
    return cov


def triplet_starts(arrays: ArrayOps, detector: Detector, sp: SpacepointArrays,
                   triplets: Array, config: TracccSeedingConfig) -> tuple[Array, Array]:
    """Start parameters (n, 6) and covariance (n, 6, 6) on each triplet's bottom module, where
    ``arrays`` works: the helix estimate through the three space points, traccc's initial
    covariance."""
    center, rotation = arrays.geometry(detector)
    rows = sp.rows[triplets[:, 0]]
    params = helix_parameters(sp.xyz[triplets], center[rows], rotation[rows], config.bz,
                              xp=arrays.xp)
    return params, traccc_covariance(params, config, arrays.xp)


def fit_starts(detector: Detector, measurements: Measurements, prototracks: ProtoTracks,
               config: TracccSeedingConfig) -> tuple[SeedStarts, np.ndarray]:
    """Start parameters from the Kalman fit of each proto-track (on its first measurement's
    module), covariance times ``covariance_inflation_factor``; with a mask of the
    proto-tracks whose fit succeeded and passed the fitting config's momentum cuts. On the
    host (taas' CPU fitter) on every backend."""
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
    ``spacepoints``; quality shifted below 0 (after every proto-track seed), order kept. On
    the host (taas' CPU triplet seeding) on every backend."""
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


def all_supplementary_seeds(detector: Detector, measurements: Measurements,
                            spacepoints: Spacepoints, config: TracccSeedingConfig) -> Seeds:
    """``supplementary_seeds`` of every space point (the ``all`` mode) on the configuration's
    host threads. It reads no proto-track, so it can start before the GNN has finished
    (``traccc_bridge.stages.EarlySupplementarySeeding``)."""
    return supplementary_seeds(detector, measurements, spacepoints,
                               np.zeros(len(spacepoints), bool),
                               SeedingConfig(threads=config.supplementary_threads))


def passes_momentum_cuts(params: Array, min_p: float, min_pt: float,
                         xp: ModuleType = np) -> Array:
    """Mask of bound parameters with p >= ``min_p`` and pT >= ``min_pt`` (GeV); arrays of
    ``xp`` (numpy, or torch on the parameters' device)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 / abs(params[:, QOP])
        return (p >= min_p) & (p * xp.sin(params[:, THETA]) >= min_pt)


#: Seed quality per triplet rank: a proto-track's k-th triplet ranks after every proto-track's
#: (k-1)-th, so that it runs in a later CKF batch, when the seed deduplication can skip it if
#: an earlier triplet found the track. Within a rank, longer proto-tracks first.
_TIER = 1.0e4


@dataclass
class BridgeOutput:
    """What the CKF needs from the proto-tracks, on the host but for the starts' parameters
    and covariances, which stay where the bridge's arrays work (the CKF reads them there).

    ``prototrack``: per seed, the proto-track it came from (-1: a supplementary seed);
    ``seed_offsets`` /
    ``seed_indices``: per seed, its proto-track's measurements (repeats dropped);
    ``surface_order`` / ``surface_offsets`` / ``surfaces`` (module rows): ``sort_by_surface``,
    where the bridge's arrays work.
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
                     config: TracccSeedingConfig | None = None, arrays: ArrayOps = HOST,
                     supplementary: Seeds | None = None) -> BridgeOutput:
    """Proto-tracks -> up to ``seeds_per_prototrack`` seeds per proto-track with
    ``min_layers`` distinct layers (``seed_triplets``), then the supplementary seeds.

    With the ``fit`` method, every triplet of a proto-track starts from its fit, and a
    proto-track whose fit fails or misses the fitting momentum cuts gets no seed (its
    measurements do not form a track; the supplementary seeding may still find them).

    ``arrays``: where the array work runs (module docstring). Its copies per event: up, the
    measurements' module rows and local u, v (3), the proto-tracks (2), the space points (2),
    and with supplementary seeds their triplets (1)
    (the ``fit`` method: its mask (1) and its starts (2)); down, the seeds' proto-tracks,
    triplets, quality, vertex z, measurement lists (2) (``fit``: also the uniqued proto-tracks
    (2)). The start parameters and covariances stay where ``arrays`` works.

    ``supplementary``: the ``all`` mode's seeds when computed already
    (``all_supplementary_seeds`` of the same measurements and space points).
    """
    config = config or TracccSeedingConfig()
    xp = arrays.xp
    n_meas = len(measurements)
    check_prototracks(prototracks, n_meas)
    meas_rows = detector.index_of(measurements["module_key"])
    order, surfaces, surface_offsets = sort_by_surface(
        arrays, *(arrays.upload(a) for a in (meas_rows, measurements["local_u"],
                                             measurements["local_v"])))
    sp_rows = meas_rows[spacepoints["measurement_index"]]
    sp = SpacepointArrays.upload(arrays, spacepoints, n_meas, layer_keys(detector, sp_rows),
                                 sp_rows)
    offsets = prototracks["offsets"] if len(prototracks) else np.zeros(1, np.int64)
    offsets, indices = unique_lists(arrays.upload(offsets),
                                    arrays.upload(prototracks["indices"]), arrays)
    triplets, z_vertex = choose_triplets(arrays, offsets, indices, sp, config.min_layers,
                                         config.seeds_per_prototrack)
    lengths = xp.diff(offsets)
    usable = triplets[:, :, 0] >= 0
    if config.method == "fit":
        fit, fitted = fit_starts(detector, measurements, ProtoTracks(
            offsets=arrays.download(offsets), indices=arrays.download(indices)), config)
        usable &= arrays.upload(fitted)[:, None]
    # every proto-track's first triplet, then every second one...: (triplet k, proto-track)
    rank, chosen = xp.where(usable.T)
    triplets = triplets[chosen, rank]
    quality = (xp.asarray(config.seeds_per_prototrack - rank, dtype=xp.float64) * _TIER
               + lengths[chosen])
    sel_offsets = _offsets(arrays, lengths[chosen])
    first = arrays.repeat(offsets[chosen] - sel_offsets[:-1], lengths[chosen])
    sel_indices = indices[first + arrays.arange(len(first))]
    prototrack, seed_offsets, seed_indices, seed_spacepoints = (
        arrays.download(a) for a in (chosen, sel_offsets, sel_indices, triplets))
    seeds = Seeds(spacepoints=seed_spacepoints,
                  quality=arrays.download(quality).astype(np.float32),
                  z_vertex=arrays.download(z_vertex[chosen]).astype(np.float32))
    # the starts to estimate: the proto-tracks' triplets (unless fitted), the supplementary
    estimate = triplets if config.method == "triplet" else triplets[:0]
    if config.supplementary_seeding != "none":
        if config.supplementary_seeding == "all":
            extra = (supplementary if supplementary is not None
                     else all_supplementary_seeds(detector, measurements, spacepoints, config))
        else:  # uncovered
            covered = np.zeros(n_meas, bool)
            covered[seed_indices] = True
            extra = supplementary_seeds(detector, measurements, spacepoints,
                                        covered[spacepoints["measurement_index"]],
                                        SeedingConfig(threads=config.supplementary_threads))
        estimate = xp.concatenate([estimate, arrays.upload(extra["spacepoints"])])
        seeds = Seeds(**{k: np.concatenate([seeds[k], extra[k]]) for k in seeds.columns()})
        prototrack = np.r_[prototrack, np.full(len(extra), -1, np.int64)]
        seed_offsets = np.r_[seed_offsets, np.full(len(extra), seed_offsets[-1], np.int64)]
    params, cov = triplet_starts(arrays, detector, sp, estimate, config)
    if config.method == "fit":
        proto_seeds = prototrack[prototrack >= 0]
        params = xp.concatenate([arrays.upload(fit.params[proto_seeds]), params])
        cov = xp.concatenate([arrays.upload(fit.covariance[proto_seeds]), cov])
    # the bottom module of every seed: of its space point, or of the proto-track's fit
    keys = measurements["module_key"][spacepoints["measurement_index"][
        seeds["spacepoints"][:, 0]]] if len(seeds) else np.zeros(0, np.uint64)
    if config.method == "fit":
        keys[:len(proto_seeds)] = fit.module_key[proto_seeds]
    return BridgeOutput(seeds, SeedStarts(keys, params, cov), prototrack, seed_offsets,
                        seed_indices, order, surfaces, surface_offsets)
