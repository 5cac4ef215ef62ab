"""Fit proto-tracks (measurement lists) with the Kalman filter: the shared fitting stage's core.

``fit_prototracks`` is what ``backends/cpu/track_fit.py`` runs and what the CKF reuses for its
final fit. Steps per call:

1. check the inputs (finite measurements, positive variances, a valid CSR list);
2. order each proto-track's measurements along the track by the 3D distance of their global
   position from the track's origin on the beam line, (0, 0, z_v), z_v from a straight-line
   fit of z against r through the track's measurements. For a track from the luminous region
   that has not turned through half a loop, both r and |z - z_v| grow monotonically along the
   helix, so the distance does too (this, unlike r alone, also orders hits on endcap disks at
   nearly equal r). Distance from the origin instead misorders tracks from a vertex far from
   z = 0 that head back towards it (a 55 mm beam spot makes that common: measured against
   ACTS' fitter, whose navigator finds the order itself). Tracks with a large impact
   parameter or loopers beyond half a turn are outside this rule;
3. skip proto-tracks with fewer than ``min_measurements`` measurements (5 parameters need at
   least 3 2D measurements): they are *absent* from the output, whose measurement lists
   identify every fitted track; ``fit_prototracks`` also returns the indices of those fitted;
4. estimate start parameters from the helix through the measurements (``estimation``), then
   run filter + smoother on batches of tracks sorted longest first, every length in one batch
   (``kalman.kalman_fit``'s ``lengths``: on a GPU, one set of copies per batch rather than per
   length); optionally iterate, restarting
   from the smoothed first state with the loose prior, to remove the linearisation error of a
   poor start. Tracks whose propagation fails (no intersection with the next module) or whose
   state turns invalid are skipped.

Output parameters are the smoothed ones on the first measurement's module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.errors import InputError
from taas.tracking import helix
from taas.tracking.estimation import estimate_parameters, loose_covariance
from taas.tracking.field import field_of, track_step_bz
from taas.tracking.kalman import KalmanFit, Surfaces, kalman_fit
from taas.tracking.material import (
    X0_SILICON,
    add_rows,
    apply_energy_loss,
    material_model,
    slab_noise,
    tangent_frame,
)
from taas.tracking.measurement_errors import (
    CALIBRATED,
    check_error_source,
    measurement_variances,
)
from taas.tracking.parameters import (
    PHI,
    QOP,
    THETA,
    bound_to_free,
    bound_to_perigee,
    free_to_bound,
    wrap_phi,
)


@dataclass(frozen=True)
class TrackFitConfig:
    """Settings of the Kalman track fit.

    ``bz``: solenoid field (T), non-zero; ``max_iterations``: filter+smoother passes at most
    (later passes restart from the smoothed first state with the loose prior and stop once no
    parameter moves by more than ``convergence`` of its error; one pass is the ACTS default and
    was already converged for 0.55-1000 GeV toy tracks, so extra passes are for poor starts);
    ``min_measurements``: shorter proto-tracks are skipped; ``multiple_scattering``: material
    effects; ``material``: take them from the detector's material table
    (``taas.detector.material``: module slabs, passive surfaces, mean energy loss) where one
    exists, else (and when False) Highland noise from each module's thickness in units of
    ``x0`` (mm); ``mass``: particle hypothesis
    (GeV) for beta; ``batch_size``: tracks fitted together (bounds memory: ~2.5 kB per track and
    measurement); ``measurement_errors``: where measurement variances come from
    (``taas.tracking.measurement_errors``: ``"calibrated"``, ``"cluster"`` or a calibration
    file).
    """

    bz: float = 2.0
    max_iterations: int = 1
    convergence: float = 0.05
    min_measurements: int = 3
    multiple_scattering: bool = True
    material: bool = True
    x0: float = X0_SILICON
    mass: float = helix.PION_MASS
    batch_size: int = 4096
    measurement_errors: str = CALIBRATED

    def __post_init__(self) -> None:
        if not np.isfinite(self.bz) or self.bz == 0:
            raise ValueError(f"bz must be finite and non-zero (T), got {self.bz}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not self.convergence > 0:
            raise ValueError(f"convergence must be > 0, got {self.convergence}")
        if self.min_measurements < 3:
            raise ValueError(f"min_measurements must be >= 3, got {self.min_measurements}")
        if not self.x0 > 0:
            raise ValueError(f"x0 must be > 0 (mm), got {self.x0}")
        if not self.mass >= 0:
            raise ValueError(f"mass must be >= 0 (GeV), got {self.mass}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        check_error_source(self.measurement_errors)


def check_measurements(measurements: Measurements) -> None:
    """Raise ``InputError`` naming the first row with a non-finite value or a variance <= 0."""
    for column in ("local_u", "local_v", "var_u", "var_v"):
        values = measurements[column]
        bad = ~np.isfinite(values)
        if column.startswith("var"):
            bad |= ~(values > 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"measurement {column} = {values[row]} is not usable "
                             f"({int(bad.sum())} rows affected)", row=row, column=column)


def check_prototracks(prototracks: ProtoTracks, n_measurements: int) -> None:
    """Raise ``InputError`` unless offsets and indices form a valid CSR list."""
    offsets, indices = prototracks["offsets"], prototracks["indices"]
    if len(offsets) == 0:
        if len(indices):
            raise InputError("prototracks: indices without offsets", column="offsets")
        return
    if offsets[0] != 0 or offsets[-1] != len(indices) or np.any(np.diff(offsets) < 0):
        raise InputError(f"prototracks: offsets must rise from 0 to len(indices) = "
                         f"{len(indices)}", column="offsets")
    bad = (indices < 0) | (indices >= n_measurements)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"prototracks: measurement index {int(indices[row])} out of range "
                         f"[0, {n_measurements})", row=row, column="indices")


def order_along_tracks(offsets: np.ndarray, indices: np.ndarray,
                       xyz: np.ndarray) -> np.ndarray:
    """``indices`` re-ordered within each CSR list by distance of ``xyz[index]`` from the
    list's beam-line origin (0, 0, z_v): z_v is the intercept of the least-squares line
    z = z_v + b r through the list's points (b = 0 when all share one r)."""
    n_tracks = len(offsets) - 1
    track = np.repeat(np.arange(n_tracks), np.diff(offsets))
    points = np.take(xyz, indices, axis=0)
    r, z = np.hypot(points[:, 0], points[:, 1]), points[:, 2]
    n, sr, sz, srr, srz = (np.bincount(track, w, minlength=n_tracks)
                           for w in (None, r, z, r * r, r * z))
    den = n * srr - sr * sr
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(den > 1e-9 * np.maximum(n * srr, 1.0), (n * srz - sr * sz) / den, 0.0)
        z_v = np.where(n > 0, (sz - slope * sr) / n, 0.0)
    return _sort_within_lists(offsets, np.hypot(r, z - z_v[track]), indices)


@numba.njit(cache=True)
def _sort_within_lists(offsets: np.ndarray, key: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``indices`` re-ordered within each CSR list by ascending (finite) ``key``, equal keys
    in their order: ``indices[np.lexsort((key, list))]``, by insertion sort, since proto-track
    lists are short (a tenth of the lexsort's time on a ``large`` event's lists)."""
    out = indices.copy()
    key = key.copy()
    for t in range(len(offsets) - 1):
        for i in range(offsets[t] + 1, offsets[t + 1]):
            k, v = key[i], out[i]
            j = i - 1
            while j >= offsets[t] and key[j] > k:
                key[j + 1], out[j + 1] = key[j], out[j]
                j -= 1
            key[j + 1], out[j + 1] = k, v
    return out


def fit_prototracks(detector: Detector, measurements: Measurements, prototracks: ProtoTracks,
                    config: TrackFitConfig | None = None, *,
                    kalman: KalmanFit = kalman_fit,
                    geometry_by_rows: bool = False) -> tuple[Tracks, np.ndarray]:
    """Fit every proto-track; returns the tracks and, per track, its proto-track index.

    ``kalman`` runs filter + smoother on a batch (``kalman.kalman_fit``'s signature): the
    device hook (``taas.tracking.batched.fit.kalman_fit_torch`` runs it with torch).
    ``geometry_by_rows``: the hook gathers the modules' geometry and material slabs itself
    from their rows, where it works, and gets no ``Surfaces``; only the centres and the first
    modules' rotations, which the start estimate and the field read, are gathered here."""
    config = config or TrackFitConfig()
    check_measurements(measurements)
    check_prototracks(prototracks, len(measurements))
    offsets = prototracks["offsets"] if len(prototracks) else np.zeros(1, np.int64)
    rows = detector.index_of(measurements["module_key"])
    xyz = detector.local_to_global(rows, measurements["local_u"], measurements["local_v"])
    ordered = order_along_tracks(offsets, prototracks["indices"], xyz)
    lengths = np.diff(offsets)
    uv = np.stack([measurements["local_u"], measurements["local_v"]], axis=1)
    var = measurement_variances(detector, measurements, config.measurement_errors)

    n = len(lengths)
    params, cov = np.empty((n, 6)), np.empty((n, 6, 6))
    chi2, fitted = np.empty(n), np.zeros(n, bool)
    longest_first = np.flatnonzero(lengths >= config.min_measurements)
    longest_first = longest_first[np.argsort(-lengths[longest_first], kind="stable")]
    for start in range(0, len(longest_first), config.batch_size):
        sel = longest_first[start:start + config.batch_size]
        # padded to the longest with each track's last measurement (ignored by the fit)
        steps = np.minimum(np.arange(lengths[sel[0]]), lengths[sel][:, None] - 1)
        meas_idx = ordered[offsets[sel][:, None] + steps]
        # np.take: numpy's fancy indexing of rows of a 2-D array is several times slower
        p, c, x2, ok = _fit_batch(detector, rows[meas_idx], np.take(xyz, meas_idx, axis=0),
                                  np.take(uv, meas_idx, axis=0), np.take(var, meas_idx, axis=0),
                                  lengths[sel], config=config, kalman=kalman,
                                  geometry_by_rows=geometry_by_rows)
        params[sel], cov[sel], chi2[sel], fitted[sel] = p, c, x2, ok
    keep = np.flatnonzero(fitted)
    first_meas = ordered[offsets[keep]]
    kept_lengths = lengths[keep]
    meas_offsets = np.concatenate([[0], np.cumsum(kept_lengths)])
    starts = np.repeat(offsets[keep] - meas_offsets[:-1], kept_lengths)
    meas_indices = ordered[starts + np.arange(meas_offsets[-1])]
    tracks = Tracks(module_key=measurements["module_key"][first_meas], params=params[keep],
                    covariance=cov[keep], chi2=chi2[keep], ndf=2 * kept_lengths - 5,
                    meas_offsets=meas_offsets, meas_indices=meas_indices)
    return tracks, keep


def _fit_batch(detector: Detector, rows: np.ndarray, xyz: np.ndarray, uv: np.ndarray,
               var: np.ndarray, lengths: np.ndarray, *, config: TrackFitConfig,
               kalman: KalmanFit = kalman_fit, geometry_by_rows: bool = False,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimate + iterated Kalman fit of N tracks of ``lengths`` measurements (longest first),
    padded to the longest (arrays (N, n, ...)); ``geometry_by_rows``: ``fit_prototracks``'."""
    center = np.take(detector.center, rows, axis=0)
    module_slab, passive = (material_model(detector) if config.material
                            else (None, None))
    surfaces: Surfaces | None = None
    slabs = module_slab  # gathered by the hook, from the detector's copy where it works
    if not geometry_by_rows:
        surfaces = Surfaces(center, np.take(detector.rotation, rows, axis=0),
                            detector.modules["thickness"][rows])
        slabs = np.take(module_slab, rows, axis=0) if module_slab is not None else None
    first_rotation = np.take(detector.rotation, rows[:, 0], axis=0)
    start, prior = np.empty((len(xyz), 6)), np.empty((len(xyz), 6, 6))
    for length in np.unique(lengths):  # the helix estimate reads each track's own points
        group = lengths == length
        start[group], prior[group] = estimate_parameters(
            xyz[group, :length], center[group, 0], first_rotation[group], config.bz)
    ok = np.all(np.isfinite(start), axis=1)
    start[~ok] = np.nan
    field = field_of(detector, config.bz)
    for _ in range(config.max_iterations):
        # each step's field at the theta the fit starts from (constant along a helix)
        bz = track_step_bz(field, center, start[:, THETA])
        result = kalman(start, prior, surfaces, uv, var, bz=bz,
                        multiple_scattering=config.multiple_scattering, x0=config.x0,
                        mass=config.mass, module_slab=slabs, passive=passive,
                        lengths=lengths, first_state_only=True, rows=rows)
        first, first_cov = result.params[:, 0], result.cov[:, 0]
        delta = first - start
        delta[:, PHI] = wrap_phi(delta[:, PHI])
        with np.errstate(invalid="ignore"):
            shift = np.abs(delta) / np.sqrt(np.diagonal(first_cov, axis1=1, axis2=2))
        converged = bool(np.all(shift[result.ok] < config.convergence))
        start, prior = first, loose_covariance(first)
        if converged:
            break
    return first, first_cov, result.chi2, ok & result.ok


def tracks_to_perigee(tracks: Tracks, detector: Detector, bz: float = 2.0,
                      mass: float = helix.PION_MASS, *, material: bool = True,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Perigee parameters (n, 6) ``(d0, z0, phi, theta, q/p, t)`` and covariances (n, 6, 6).

    With ``material`` and a material table for the detector, the passive surfaces between the
    perigee and the first measurement (the beam pipe, and any layer material before a first
    measurement beyond the innermost layer) add their scattering and straggling, each
    transported from its crossing to the perigee, and their mean energy loss is given back to
    |q/p| (the particle had it at the perigee). Without this, extrapolating a track from
    r = 32 mm through the 0.23 % X0 beam pipe at r = 19 mm claims a d0 precision the particle
    never had.
    """
    if len(tracks) == 0:
        return np.zeros((0, 6)), np.zeros((0, 6, 6))
    rows = detector.index_of(tracks["module_key"])
    center, rotation = detector.center[rows], detector.rotation[rows]
    perigee, cov = bound_to_perigee(tracks["params"], tracks["covariance"], center, rotation,
                                    bz=bz, mass=mass)
    assert cov is not None
    passive = material_model(detector)[1] if material else None
    if passive is None or not len(passive):
        return perigee, cov
    free = bound_to_free(tracks["params"], center, rotation)
    s_pca, ok = helix.path_to_beamline(free, bz)
    track, at, normal, slab = passive.crossings(free, np.where(ok, s_pca, 0.0), bz, mass)
    if len(track):
        rot = tangent_frame(normal)
        params = free_to_bound(at, at[:, 0:3], rot)
        params[:, :2] = 0.0
        q, de = slab_noise(params, np.einsum("ni,ni->n", normal, at[:, helix.DIR]), slab, mass)
        _, q_perigee = bound_to_perigee(params, q, at[:, 0:3], rot, bz=bz, mass=mass)
        assert q_perigee is not None
        cov = cov.copy()
        add_rows(cov.reshape(len(cov), 36), track, q_perigee.reshape(-1, 36))
        loss = np.bincount(track, weights=de, minlength=len(tracks))
        perigee = perigee.copy()
        perigee[:, QOP] = apply_energy_loss(perigee[:, QOP], loss, mass, sign=-1.0)
    return perigee, cov
