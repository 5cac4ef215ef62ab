"""Kalman filter + RTS smoother in torch, batched over tracks: the track fit on a GPU.

``kalman_fit_torch`` has ``taas.tracking.kalman.kalman_fit``'s signature and result (plus the
device), so ``taas.tracking.fitter.fit_prototracks(..., kalman=...)`` runs the whole fit with
it: the host keeps the bookkeeping (input checks, ordering along the track, grouping by length,
the helix estimate of the start parameters, convergence of the iterations), the device runs the
filter and smoother. Every formula comes from ``taas.tracking.batched.formulas`` (torch
flavour), the same text the numba chain runs per track; what is written here is the sequence
of the filter, mirrored line by line from ``kalman_fit`` (which noise is added when, where the
energy loss applies): the one part that exists twice, and
``tests/tracking/test_batched_fit.py`` holds the two to the same tracks.

Layout: the track axis is last (``cov`` (6, 6, N)); per module k the arrays carry k first
((n, 6, 6, N)). dtype: float64 on every device. The fit's covariances span ~12 orders of
magnitude (a 1 mm prior against ~10 um measurements and 1e-4 relative q/p errors), and the RTS
gain solves with the predicted covariance; float32 would lose the smoothed errors. The
arithmetic is tiny against the launch count, so float64 costs little even on a GPU.

Tracks of different lengths share a call (``lengths``, longest first, as ``kalman_fit``): at
measurement k the formulas run on the prefix of tracks still running (views of the track axis),
so the launches per call are those of the longest track, not of every length.

Copies: one host -> device copy of the batch's inputs and one device -> host copy of the
smoothed states per call (``fit_prototracks`` calls once per batch of ``batch_size`` tracks,
every length together).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

import numpy as np
import torch

from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.stages.device_tensors import TransferCounter
from taas.tracking import helix
from taas.tracking.batched import torch_ops
from taas.tracking.batched.constants import PHI, QOP, THETA
from taas.tracking.batched.torch_ops import FORMULAS as F
from taas.tracking.fitter import TrackFitConfig, fit_prototracks
from taas.tracking.kalman import KalmanResult, Surfaces, running_tracks
from taas.tracking.material import X0_SILICON, PassiveMaterial


class Scratch:
    """Buffers the formulas write into, allocated once per fit for N tracks."""

    def __init__(self, n: int, like: torch.Tensor) -> None:
        def empty(*shape: int) -> torch.Tensor:
            return torch.empty((*shape, n), dtype=like.dtype, device=like.device)

        self.out, self.jac = empty(6), empty(6, 6)
        self.work8, self.tangent = empty(8, 8), empty(8)
        self.b2f, self.f2b, self.m1, self.proj = empty(8, 6), empty(6, 8), empty(8, 6), empty(6)
        self.gain, self.gain_v, self.work = empty(6, 2), empty(6, 2), empty(6, 6)
        self.lu, self.rts_gain, self.diff = empty(6, 6), empty(6, 6), empty(6)

    def propagation(self) -> tuple[torch.Tensor, ...]:
        """``out, jac`` and the scratch of ``formulas.propagate_state``, in its order."""
        return (self.out, self.jac, self.work8, self.tangent, self.b2f, self.f2b, self.m1,
                self.proj)


def _symmetric(cov: torch.Tensor) -> torch.Tensor:
    return 0.5 * (cov + cov.transpose(0, 1))


def sandwich(jac: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """J C J^T, symmetrised, per track ((J C) J^T, as numpy's ``J @ C @ J.T``)."""
    jc, out = torch.empty_like(cov), torch.empty_like(cov)
    torch_ops.matmul_into(jc, jac, cov, 6, 6, 6)
    torch_ops.matmul_nt_into(out, jc, jac, 6, 6, 6)
    return _symmetric(out)


def _cos_incidence(rotation: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """normal . direction of bound states on planes of ``rotation`` (3, 3, N)."""
    st = torch.sin(state[THETA])
    return (rotation[0, 2] * torch.cos(state[PHI]) * st + rotation[1, 2] * torch.sin(state[PHI])
            * st + rotation[2, 2] * torch.cos(state[THETA]))


def bound_to_free_torch(params: torch.Tensor, center: torch.Tensor,
                   rotation: torch.Tensor) -> torch.Tensor:
    """Free vectors (8, N) of bound parameters (6, N) on planes (3, N) / (3, 3, N)."""
    st = torch.sin(params[THETA])
    pos = center + rotation[:, 0] * params[0] + rotation[:, 1] * params[1]
    return torch.stack([pos[0], pos[1], pos[2], params[5], torch.cos(params[PHI]) * st,
                        torch.sin(params[PHI]) * st, torch.cos(params[THETA]), params[QOP]])


class PassiveSurfaces:
    """``PassiveMaterial``'s surfaces as tensors; ``noise`` is its ``noise_at`` on the device.

    Every (segment, surface) pair gets the cheap test at once (a few tens of surfaces); the
    survivors are gathered for the intersection, then the crossings for their noise."""

    def __init__(self, passive: PassiveMaterial, like: torch.Tensor) -> None:
        def put(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=like.dtype,
                                   device=like.device)

        self.disc_z, self.disc_rmin, self.disc_rmax = (put(passive.disc_z)[:, None],
                                                       put(passive.disc_rmin)[:, None],
                                                       put(passive.disc_rmax)[:, None])
        self.cyl_r, self.cyl_zmin, self.cyl_zmax = (put(passive.cyl_r)[:, None],
                                                    put(passive.cyl_zmin)[:, None],
                                                    put(passive.cyl_zmax)[:, None])
        self.slab = put(np.concatenate([passive.disc_slab, passive.cyl_slab])).T  # (4, S)
        self.n_discs = len(passive.disc_z)

    def noise(self, free: torch.Tensor, s_end: torch.Tensor, dst_center: torch.Tensor,
              dst_rotation: torch.Tensor, h_per_qop: float | torch.Tensor, mass: float,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise (6, 6, N) on the destination planes and mean energy loss (N,) of segments
        starting at ``free`` (8, N) and running a path ``s_end`` (N,); ``h_per_qop`` one for
        all segments or (N,)."""
        n = free.shape[1]
        x, y, z, tx, ty, tz = free[0], free[1], free[2], free[4], free[5], free[6]
        h = h_per_qop * free[7]
        # the cheap tests on every (surface, segment) pair, the dear ones on the survivors
        s_disc, inside = F.disc_path(z, tz, s_end, self.disc_z)
        d_surface, d_track = torch.nonzero(inside, as_tuple=True)
        s_d = s_disc[d_surface, d_track]
        r = F.transverse_radius_at(x[d_track], y[d_track], z[d_track], tx[d_track], ty[d_track],
                                   tz[d_track], h[d_track], s_d)
        on_disc = (self.disc_rmin[d_surface, 0] <= r) & (r <= self.disc_rmax[d_surface, 0])
        end_r = F.transverse_radius_at(x, y, z, tx, ty, tz, h, s_end)
        between = F.radius_between(torch.hypot(x, y), end_r, self.cyl_r)
        c_surface, c_track = torch.nonzero(between, as_tuple=True)
        s_c, found = F.cylinder_segment_path(x[c_track], y[c_track], tx[c_track], ty[c_track],
                                             h[c_track], s_end[c_track], self.cyl_r[c_surface, 0])
        z_c = z[c_track] + s_c * tz[c_track]
        on_cyl = (found & (self.cyl_zmin[c_surface, 0] <= z_c)
                  & (z_c <= self.cyl_zmax[c_surface, 0]))
        # discs first, then cylinders, each by surface then segment (PassiveMaterial's order
        # per segment, so the noise sums add up in the same order)
        surface = torch.cat([d_surface[on_disc], c_surface[on_cyl] + self.n_discs])
        track = torch.cat([d_track[on_disc], c_track[on_cyl]])
        s_at = torch.cat([s_d[on_disc], s_c[on_cyl]])
        noise = torch.zeros((6, 6, n), dtype=free.dtype, device=free.device)
        loss = torch.zeros(n, dtype=free.dtype, device=free.device)
        if len(track) == 0:
            return noise, loss
        at = torch.empty((8, len(track)), dtype=free.dtype, device=free.device)
        h_track = h_per_qop[track] if isinstance(h_per_qop, torch.Tensor) else h_per_qop
        F.free_state_at(free[:, track], s_at, h_track, mass, at)
        disc = surface < self.n_discs
        radial = torch.hypot(at[0], at[1])
        nx = torch.where(disc, 0.0, at[0] / radial)
        ny = torch.where(disc, 0.0, at[1] / radial)
        nz = torch.where(disc, 1.0, 0.0).to(free.dtype)
        one = torch.empty((6, 6, len(track)), dtype=free.dtype, device=free.device)
        scratch = Scratch(len(track), free)
        de = F.passive_noise(at, nx, ny, nz, self.slab[:, surface], dst_center[:, track],
                             dst_rotation[:, :, track], h_track, mass, one,
                             torch.empty_like(one[:3, :3]), torch.empty_like(one[:3, 0]),
                             torch.empty_like(one[:, 0]), *scratch.propagation(),
                             torch.empty_like(one), torch.empty_like(one))
        noise.index_add_(2, track, one)
        loss.index_add_(0, track, de)
        return noise, loss


def module_noise(state: torch.Tensor, rotation: torch.Tensor, thickness: torch.Tensor,
                 slab: torch.Tensor | None, x0: float, mass: float,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(var phi, var theta, var q/p, mean energy loss) of states (6, N) crossing the modules of
    ``rotation`` (3, 3, N): with a slab ``(thickness, x0, molar_e_rho, I)`` (4, N) from the
    material table its scattering, straggling and loss; without, silicon of ``thickness`` in
    units of ``x0``, scattering only (``kalman_fit``'s two models)."""
    cos_inc = _cos_incidence(rotation, state)
    if slab is None:
        x_over_x0 = thickness / torch.clamp_min(torch.abs(cos_inc), 1e-6) / x0
        var_phi, var_theta = F.scattering_variances(state[QOP], state[THETA], x_over_x0, mass)
        zero = torch.zeros_like(var_phi)
        return var_phi, var_theta, zero, zero
    return F.slab_effects(state[QOP], state[THETA], cos_inc, *slab, mass)


def with_noise(cov: torch.Tensor, var_phi: torch.Tensor, var_theta: torch.Tensor,
               var_qop: torch.Tensor) -> torch.Tensor:
    """A copy of ``cov`` (6, 6, N) with the variances added to phi, theta and q/p."""
    noisy = cov.clone()
    noisy[PHI, PHI] += var_phi
    noisy[THETA, THETA] += var_theta
    noisy[QOP, QOP] += var_qop
    return noisy


class RaggedBatch:
    """N tracks of different lengths, longest first, padded to n: which entries are a track's
    own, and the copies that move only those (the padding is zeros on the device, never read:
    each step runs the running prefix; NaN again on the host)."""

    def __init__(self, running: list[int], device: torch.device, moved: TransferCounter
                 ) -> None:
        self.device, self.moved = device, moved
        n_tracks = running[0] if running else 0
        #: (N, n) a track's own entries, on the host, and on the device (built, not copied)
        self.host_own = np.arange(n_tracks)[:, None] < np.asarray(running, np.int64)[None, :]
        self.within = torch.zeros((len(running), n_tracks), dtype=torch.bool, device=device)
        for k, m in enumerate(running):
            self.within[k, :m] = True

    def up(self, a: np.ndarray, *order: int) -> torch.Tensor:
        """(N, ...) per track, permuted by ``order``, on the device."""
        return self.moved.to_device_tensor(np.asarray(a, float), self.device,
                                           torch.float64).permute(*order).contiguous()

    def up_steps(self, a: np.ndarray, *order: int, dtype: torch.dtype = torch.float64
                 ) -> torch.Tensor:
        """(N, n, ...) per track and measurement: the own entries up, padded there."""
        a = np.asarray(a, float if dtype.is_floating_point else np.int64)
        padded = torch.zeros(a.shape, dtype=dtype, device=self.device)
        padded[self.within.T] = self.moved.to_device_tensor(a[self.host_own], self.device)
        return padded.permute(*order).contiguous()

    def valid(self, chi2: torch.Tensor, smooth: torch.Tensor, smooth_cov: torch.Tensor
              ) -> torch.Tensor:
        """(N,) finite chi2, and finite states with 0 < theta < pi and finite covariances
        (n, ..., N) on every own entry."""
        within, theta = self.within, smooth[:, THETA]
        return (torch.isfinite(chi2)
                & (torch.isfinite(smooth) | ~within[:, None]).all(dim=1).all(dim=0)
                & (((theta > 0) & (theta < torch.pi)) | ~within).all(dim=0)
                & (torch.isfinite(smooth_cov) | ~within[:, None, None]).flatten(0, 2).all(dim=0))

    def down_states(self, smooth: torch.Tensor, smooth_cov: torch.Tensor, first_only: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
        """States (n, 6, N) and covariances (n, 6, 6, N) on the host as (N, n, ...): the
        tracks' own entries copied, NaN elsewhere; ``first_only``: the first module's alone,
        (N, 1, ...)."""
        out = []
        for tensor in (smooth, smooth_cov):
            tracks_first = tensor.movedim(-1, 0)
            if first_only:
                out.append(self.moved.to_host_array(tracks_first[:, :1]))
                continue
            padded = np.full(tuple(tracks_first.shape), np.nan)
            padded[self.host_own] = self.moved.to_host_array(tracks_first[self.within.T])
            out.append(padded)
        return out[0], out[1]


def kalman_fit_torch(params0: np.ndarray, cov0: np.ndarray, surfaces: Surfaces | None,
                     meas: np.ndarray, var: np.ndarray, *, bz: float | np.ndarray,
                     multiple_scattering: bool = True, x0: float = X0_SILICON,
                     mass: float = helix.PION_MASS, module_slab: np.ndarray | None = None,
                     passive: PassiveMaterial | None = None,
                     device: torch.device | str = "cpu",
                     transfers: TransferCounter | None = None,
                     lengths: np.ndarray | None = None,
                     first_state_only: bool = False, rows: np.ndarray | None = None,
                     detector: Detector | None = None) -> KalmanResult:
    """``taas.tracking.kalman.kalman_fit`` on ``device``: filter and smooth N tracks of n
    measurements each, or of ``lengths`` (longest first; arrays (N, n, ...) in, numpy
    ``KalmanResult`` out, NaN beyond a track's length; with ``first_state_only`` the first
    module's states alone come down). ``transfers`` counts every copy
    between host and device of the tracks' inputs and results (the passive surfaces are
    geometry: ``_passive_surfaces``). With ``detector`` and ``rows`` (N, n), its
    module rows, the surfaces and module slabs are gathered from the detector's geometry on
    the device (``ckf_step.modules_on_device``, moved once) instead of copied: ``surfaces``
    may then be None, and ``module_slab`` is only asked whether there are slabs (the fitter
    passes the detector's table, ``fit_prototracks``' ``geometry_by_rows``)."""
    dtype = torch.float64
    device = torch.device(device)
    n_tracks, n_meas = np.shape(meas)[:2]
    running = running_tracks(lengths, n_tracks, n_meas).tolist()  # host: loop control only
    batch = RaggedBatch(running, device, transfers if transfers is not None
                        else TransferCounter())
    center, rotation, thickness, slabs = _batch_geometry(batch, surfaces, module_slab,
                                                         detector, rows)
    uv, variance = batch.up_steps(meas, 1, 2, 0), batch.up_steps(var, 1, 2, 0)
    state, state_cov = batch.up(params0, 1, 0), batch.up(cov0, 1, 2, 0)
    surfaces_passive = (_passive_surfaces(passive, detector, state)
                        if multiple_scattering and passive is not None and len(passive) else None)
    # the field: one for all, or (N, n) per track and step (kalman_fit's ``bz``)
    h_per_qop: float | torch.Tensor = (
        -helix.K_FIELD * float(bz) if np.ndim(bz) == 0
        else batch.up_steps(-helix.K_FIELD * np.asarray(bz), 1, 0))
    scratch_for: Callable[[int], Scratch] = cache(partial(Scratch, like=state))  # per prefix

    filt = torch.full((n_meas, 6, n_tracks), torch.nan, dtype=dtype, device=device)
    filt_cov = torch.full((n_meas, 6, 6, n_tracks), torch.nan, dtype=dtype, device=device)
    pred, pred_cov = torch.empty_like(filt), torch.empty_like(filt_cov)
    jac = torch.empty_like(filt_cov)
    chi2 = torch.zeros(n_tracks, dtype=dtype, device=device)
    ok = torch.ones(n_tracks, dtype=torch.bool, device=device)
    for k in range(n_meas):
        m = running[k]  # the tracks still running: a prefix of the track axis
        state, state_cov, scratch = state[..., :m], state_cov[..., :m], scratch_for(m)
        if k > 0:
            noisy = state_cov
            if multiple_scattering:
                *variances, de = module_noise(state, rotation[k - 1, ..., :m],
                                              thickness[k - 1, :m],
                                              None if slabs is None else slabs[k - 1, ..., :m],
                                              x0, mass)
                noisy = with_noise(state_cov, *variances)
                if slabs is not None:
                    state = state.clone()
                    state[QOP] = F.apply_energy_loss(state[QOP], de, mass, 1.0)
            h_step = h_per_qop[k, :m] if isinstance(h_per_qop, torch.Tensor) else h_per_qop
            path, _, prop_ok = F.propagate_state(state, center[k - 1, ..., :m],
                                                 rotation[k - 1, ..., :m], center[k, ..., :m],
                                                 rotation[k, ..., :m], h_step, mass, True,
                                                 *scratch.propagation())
            ok[:m] &= prop_ok
            jac[k, ..., :m] = scratch.jac
            start = state
            state = scratch.out.clone()
            state_cov = sandwich(scratch.jac, noisy)
            if surfaces_passive is not None:
                q, de = surfaces_passive.noise(
                    bound_to_free_torch(start, center[k - 1, ..., :m], rotation[k - 1, ..., :m]),
                    torch.where(prop_ok, path, 0.0), center[k, ..., :m], rotation[k, ..., :m],
                    h_step, mass)
                state_cov = _symmetric(state_cov + q)
                state[QOP] = F.apply_energy_loss(state[QOP], de, mass, 1.0)
        pred[k, ..., :m], pred_cov[k, ..., :m] = state, state_cov
        state, state_cov = torch.empty_like(state), torch.empty_like(state_cov)
        chi2[:m] += F.gain_update(pred[k, ..., :m], pred_cov[k, ..., :m], uv[k, 0, :m],
                                  uv[k, 1, :m], variance[k, 0, :m], variance[k, 1, :m],
                                  scratch.gain, scratch.gain_v, scratch.work, state, state_cov)
        filt[k, ..., :m], filt_cov[k, ..., :m] = state, state_cov
    smooth, smooth_cov = _smoothed(filt, filt_cov, pred, pred_cov, jac, running, scratch_for)
    ok &= batch.valid(chi2, smooth, smooth_cov)
    return KalmanResult(*batch.down_states(smooth, smooth_cov, first_state_only),
                        batch.moved.to_host_array(chi2), batch.moved.to_host_array(ok))


def _batch_geometry(batch: RaggedBatch, surfaces: Surfaces | None,
                    module_slab: np.ndarray | None, detector: Detector | None,
                    rows: np.ndarray | None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``kalman_fit_torch``'s centres, rotations, thicknesses and slabs on the device: by
    module row from the detector's copy there, or the given ``surfaces`` copied up."""
    if detector is not None and rows is not None:
        return _gathered_geometry(detector, batch.up_steps(rows, 1, 0, dtype=torch.int64),
                                  module_slab is not None)
    assert surfaces is not None, "surfaces, or the detector and the module rows"
    return (batch.up_steps(surfaces.center, 1, 2, 0),
            batch.up_steps(surfaces.rotation, 1, 2, 3, 0),
            batch.up_steps(surfaces.thickness, 1, 0),
            batch.up_steps(module_slab, 1, 2, 0) if module_slab is not None else None)


def _passive_surfaces(passive: PassiveMaterial, detector: Detector | None,
                      like: torch.Tensor) -> PassiveSurfaces:
    """``passive`` on ``like``'s device: with the detector it belongs to, from the detector's
    copy there (``ckf_step.modules_on_device``, moved once per process and device, the CKF's
    too); without, moved now (a few tens of surfaces; geometry, not counted per event)."""
    from taas.tracking.batched.ckf_step import modules_on_device  # it imports this module

    if detector is not None:
        on_device = modules_on_device(detector, like.device).passive
        assert on_device is not None  # the same material table as the fit's ``passive``
        return on_device
    return PassiveSurfaces(passive, like)


def _gathered_geometry(detector: Detector, rows: torch.Tensor, slabs: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Centres (n, 3, N), rotations (n, 3, 3, N), thicknesses (n, N) and, with ``slabs``, the
    material slabs (n, 4, N) of module ``rows`` (n, N), from the device's copy of the
    detector (the values ``detector.center[rows]``... would copy up)."""
    from taas.tracking.batched.ckf_step import modules_on_device  # it imports this module

    modules = modules_on_device(detector, rows.device)
    slab = None
    if slabs:
        assert modules.slabs is not None  # the same material table as the fit's module_slab
        slab = modules.slabs[:, rows].movedim(0, 1).contiguous()
    return (modules.center[:, rows].movedim(0, 1).contiguous(),
            modules.rotation[:, :, rows].movedim(2, 0).contiguous(), modules.thickness[rows],
            slab)


def _smoothed(filt: torch.Tensor, filt_cov: torch.Tensor, pred: torch.Tensor,
              pred_cov: torch.Tensor, jac: torch.Tensor, running: list[int],
              scratch_for: Callable[[int], Scratch]) -> tuple[torch.Tensor, torch.Tensor]:
    """The RTS pass over the filtered states (n, ..., N): at module k the tracks with a
    measurement after k (a prefix), each from its own last module inwards."""
    smooth, smooth_cov = filt.clone(), filt_cov.clone()
    for k in range(len(running) - 2, -1, -1):
        m = running[k + 1]
        scratch = scratch_for(m)
        F.rts_step(smooth[k, ..., :m], smooth_cov[k, ..., :m], smooth[k + 1, ..., :m],
                   smooth_cov[k + 1, ..., :m], pred[k + 1, ..., :m], pred_cov[k + 1, ..., :m],
                   jac[k + 1, ..., :m], smooth[k, ..., :m], smooth_cov[k, ..., :m],
                   scratch.work, scratch.lu, scratch.rts_gain, scratch.diff)
    return smooth, smooth_cov


@dataclass(frozen=True)
class BatchedFitConfig(TrackFitConfig):
    """``TrackFitConfig`` of the torch fit, plus ``allow_cpu_fallback``: run on the CPU device
    when CUDA is absent (the GPU backend's choice; it then says so in its ``device``)."""

    allow_cpu_fallback: bool = True


def fit_prototracks_torch(detector: Detector, measurements: Measurements,
                          prototracks: ProtoTracks, config: TrackFitConfig | None = None, *,
                          device: torch.device | str = "cpu",
                          transfers: TransferCounter | None = None,
                          ) -> tuple[Tracks, np.ndarray]:
    """``taas.tracking.fitter.fit_prototracks`` with filter and smoother in torch on
    ``device``: the tracks and, per track, its proto-track index. ``transfers`` counts the
    copies of every batch of tracks (all lengths together)."""
    return fit_prototracks(detector, measurements, prototracks, config,
                           kalman=partial(kalman_fit_torch, device=device,
                                          transfers=transfers, detector=detector),
                           geometry_by_rows=True)
