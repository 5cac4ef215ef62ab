"""Kalman filter and Rauch-Tung-Striebel smoother on bound parameters, batched over tracks.

The textbook extended Kalman filter for track fitting (R. Frühwirth, NIM A 262 (1987) 444; the
ACTS ``KalmanFitter`` with ``GainMatrixUpdater`` / ``GainMatrixSmoother``), written for many
tracks at once: every array has a leading track axis N and a measurement axis n, and the loop
runs over the n measurements with all N tracks advanced together. Tracks of different lengths
share a batch (``lengths``, longest first): at measurement k only the prefix of tracks with more
than k measurements runs, so a batch costs the sum of its tracks' steps, not N times the longest
(and on a GPU one batch is one set of copies: ``taas.tracking.fitter`` batches every length
together).

Model, per measurement k on module k (ordered along the track):

* predict: the state is propagated along the helix from module k-1 to module k
  (``taas.tracking.propagation``) and the covariance with the transport Jacobian F_k,
  ``C_k|k-1 = F_k (C_k-1|k-1 + Q_k-1) F_k^T + P_k``, where Q_k-1 is the material noise of
  module k-1 (``taas.tracking.material``), added after the update on that module, and P_k the
  noise of passive surfaces the step crosses, transported from the crossings to module k;
  the mean energy loss in module k-1 and in those surfaces lowers |q/p| (when a material table
  gives the slabs: ``module_slab`` / ``passive``);
* update: the 2D measurement (loc0, loc1) with covariance diag(var_u, var_v), gain form with the
  Joseph covariance update (positive definite even for very loose priors); the chi2 increment is
  the predicted one, ``r^T (V + H C H^T)^-1 r``, equal to the filtered one;
* smooth: RTS backwards, ``A_k = C_k|k F_k+1^T C_k+1|k^-1``.

The smoothed state on module k is the state *arriving* at module k (before its kink), the one
the measurement there sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np

from taas.tracking import helix
from taas.tracking.batched.flavours import NUMBA as _formulas
from taas.tracking.material import (
    X0_SILICON,
    PassiveMaterial,
    add_scattering,
    apply_energy_loss,
    slab_noise,
)
from taas.tracking.parameters import PHI, QOP, THETA, bound_to_free, direction
from taas.tracking.propagation import propagate


class Surfaces(NamedTuple):
    """Module geometry along N tracks of n measurements each."""

    center: np.ndarray  #: (N, n, 3)
    rotation: np.ndarray  #: (N, n, 3, 3) local -> global, columns u, v, w
    thickness: np.ndarray  #: (N, n) mm


class KalmanResult(NamedTuple):
    """Smoothed states at every measurement, filter chi2 and a success flag per track."""

    params: np.ndarray  #: (N, n, 6)
    cov: np.ndarray  #: (N, n, 6, 6)
    chi2: np.ndarray  #: (N,) sum of the chi2 increments
    ok: np.ndarray  #: (N,) False where propagation failed or the state became invalid


#: ``kalman_fit``'s signature: the hook through which ``fitter.fit_prototracks`` runs it on
#: another device (``taas.tracking.batched.fit.kalman_fit_torch``).
KalmanFit = Callable[..., KalmanResult]


def running_tracks(lengths: np.ndarray | None, n_tracks: int, n_meas: int) -> np.ndarray:
    """How many tracks are still running at each of ``n_meas`` measurements ((n,) counts):
    a ragged batch's tracks are sorted longest first, so at measurement k the first counts[k]
    tracks run. ``lengths`` None: all tracks have all ``n_meas``. Raises ``ValueError`` for
    lengths that are not (N,), not longest first, or outside 1..n."""
    if lengths is None:
        return np.full(n_meas, n_tracks, np.int64)
    lengths = np.asarray(lengths)
    if (lengths.shape != (n_tracks,) or np.any(np.diff(lengths) > 0)
            or (n_tracks and not 1 <= lengths[-1] <= lengths[0] <= n_meas)):
        raise ValueError(f"lengths must be ({n_tracks},), longest first, within 1..{n_meas}; "
                         f"got shape {lengths.shape}, range "
                         f"{lengths.min(initial=0)}..{lengths.max(initial=0)}")
    return (lengths[None, :] > np.arange(n_meas)[:, None]).sum(axis=1)


def _symmetric(cov: np.ndarray) -> np.ndarray:
    return 0.5 * (cov + np.swapaxes(cov, -1, -2))


def _innovation(params: np.ndarray, cov: np.ndarray, meas: np.ndarray,
                var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual r (N, 2) and inverse residual covariance S^-1 (N, 2, 2)."""
    r = np.asarray(meas, float) - params[:, :2]
    s = cov[:, :2, :2].copy()
    s[:, 0, 0] += var[:, 0]
    s[:, 1, 1] += var[:, 1]
    det = s[:, 0, 0] * s[:, 1, 1] - s[:, 0, 1] * s[:, 1, 0]
    inv = np.empty_like(s)
    inv[:, 0, 0], inv[:, 1, 1] = s[:, 1, 1] / det, s[:, 0, 0] / det
    inv[:, 0, 1], inv[:, 1, 0] = -s[:, 0, 1] / det, -s[:, 1, 0] / det
    return r, inv


def predicted_chi2(params: np.ndarray, cov: np.ndarray, meas: np.ndarray,
                   var: np.ndarray) -> np.ndarray:
    """Chi2 (N,) of 2D measurements against predicted bound states on the same modules.

    ``meas`` (N, 2) are local (u, v), ``var`` (N, 2) their variances; the residual covariance
    includes the prediction's, so this is the compatibility test of a combinatorial Kalman
    filter's measurement search.
    """
    params, cov, var = np.asarray(params, float), np.asarray(cov, float), np.asarray(var, float)
    r, s_inv = _innovation(params, cov, meas, var)
    return np.einsum("ni,nij,nj->n", r, s_inv, r)


def kalman_update(params: np.ndarray, cov: np.ndarray, meas: np.ndarray, var: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filtered (params, cov, chi2 increment) after one 2D measurement per track.

    Gain K = C H^T S^-1 with S = H C H^T + V (H picks loc0, loc1), covariance in Joseph form
    (I - K H) C (I - K H)^T + K V K^T, symmetrised; one numba row loop (``_update_rows``) over
    ``taas.tracking.batched.formulas.gain_update``: 8-9x faster than the batched numpy matrix
    products it replaces (50 to 5000 rows), equal to 1e-15 relative."""
    params = np.ascontiguousarray(params, dtype=float)
    cov = np.ascontiguousarray(cov, dtype=float)
    meas = np.ascontiguousarray(meas, dtype=float)
    var = np.ascontiguousarray(var, dtype=float)
    new_params, new_cov, chi2 = np.empty_like(params), np.empty_like(cov), np.empty(len(params))
    _update_rows(params, cov, meas, var, new_params, new_cov, chi2)
    return new_params, new_cov, chi2


@numba.njit(cache=True)
def _update_rows(params: np.ndarray, cov: np.ndarray, meas: np.ndarray, var: np.ndarray,
                 out_params: np.ndarray, out_cov: np.ndarray, chi2: np.ndarray) -> None:
    """``kalman_update`` row by row (``formulas.gain_update``), into ``out_*`` and ``chi2``."""
    gain, gain_v, work = np.empty((6, 2)), np.empty((6, 2)), np.empty((6, 6))
    for n in range(params.shape[0]):
        chi2[n] = _formulas.gain_update(params[n], cov[n], meas[n, 0], meas[n, 1], var[n, 0],
                                        var[n, 1], gain, gain_v, work, out_params[n], out_cov[n])


def kalman_fit(params0: np.ndarray, cov0: np.ndarray, surfaces: Surfaces, meas: np.ndarray,
               var: np.ndarray, *, bz: float | np.ndarray, multiple_scattering: bool = True,
               x0: float = X0_SILICON, mass: float = helix.PION_MASS,
               module_slab: np.ndarray | None = None,
               passive: PassiveMaterial | None = None,
               lengths: np.ndarray | None = None,
               first_state_only: bool = False,
               rows: np.ndarray | None = None) -> KalmanResult:
    """Filter and smooth N tracks of n measurements each (``lengths`` (N,), longest first:
    of at most n; a track's entries beyond its length are ignored and come back NaN).
    ``first_state_only``: the smoothed states on the first module alone ((N, 1, ...)), what
    the track fit keeps (on a GPU the others never cross to the host). ``rows`` (N, n): the
    detector's module rows of ``surfaces``, unused here (a device hook that holds the module
    geometry on its device gathers ``surfaces`` and ``module_slab`` from it by these rows
    rather than copying them).

    ``params0`` (N, 6) and ``cov0`` (N, 6, 6) are the prior on the first module (make it loose:
    it enters the result); ``meas`` and ``var`` are (N, n, 2). Material (with
    ``multiple_scattering``): ``module_slab`` (N, n, 4) ``(thickness, x0, molar_e_rho, I)``
    per module adds scattering, straggling and mean energy loss; without it, scattering only in
    silicon of ``surfaces.thickness`` and ``x0``. ``passive`` adds the surfaces between modules.
    ``bz``: the field (T), one for all, or (N, n) per track and step (entry k: the step from
    module k-1 to k, ``taas.tracking.field.step_bz``).
    """
    meas, var = np.asarray(meas, float), np.asarray(var, float)
    n_tracks, n_meas = meas.shape[:2]
    running = running_tracks(lengths, n_tracks, n_meas)
    center, rotation, thickness = surfaces
    filt = np.full((n_tracks, n_meas, 6), np.nan)
    filt_cov = np.full((n_tracks, n_meas, 6, 6), np.nan)
    pred = np.empty_like(filt)
    pred_cov = np.empty_like(filt_cov)
    jac = np.empty((n_tracks, n_meas, 6, 6))
    chi2 = np.zeros(n_tracks)
    ok = np.ones(n_tracks, bool)
    state, state_cov = np.asarray(params0, float), np.asarray(cov0, float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for k in range(n_meas):
            m = running[k]  # the tracks still running: a prefix
            state, state_cov = state[:m], state_cov[:m]
            if k > 0:
                noisy = state_cov
                if multiple_scattering:
                    cos_inc = np.einsum("ni,ni->n", rotation[:m, k - 1, :, 2],
                                        direction(state[:, PHI], state[:, THETA]))
                    if module_slab is None:
                        noisy = add_scattering(state, state_cov, cos_inc, thickness[:m, k - 1],
                                               x0=x0, mass=mass)
                    else:
                        q, de = slab_noise(state, cos_inc, module_slab[:m, k - 1], mass)
                        noisy = state_cov + q
                        state = state.copy()
                        state[:, QOP] = apply_energy_loss(state[:, QOP], de, mass)
                step = bz[:m, k] if isinstance(bz, np.ndarray) else bz
                prop = propagate(state, center[:m, k - 1], rotation[:m, k - 1], center[:m, k],
                                 rotation[:m, k], bz=step, mass=mass)
                ok[:m] &= prop.ok
                jac[:m, k] = prop.jacobian
                start = state
                state = prop.params
                state_cov = _symmetric(prop.transport @ noisy @ np.swapaxes(prop.transport, 1, 2))
                if multiple_scattering and passive is not None and len(passive):
                    q, de = passive.noise_at(
                        bound_to_free(start, center[:m, k - 1], rotation[:m, k - 1]),
                        np.where(prop.ok, prop.path, 0.0), center[:m, k], rotation[:m, k],
                        bz=step, mass=mass)
                    state_cov = _symmetric(state_cov + q)
                    state[:, QOP] = apply_energy_loss(state[:, QOP], de, mass)
            pred[:m, k], pred_cov[:m, k] = state, state_cov
            state, state_cov, dchi2 = kalman_update(state, state_cov, meas[:m, k], var[:m, k])
            chi2[:m] += dchi2
            filt[:m, k], filt_cov[:m, k] = state, state_cov
        within = np.arange(n_tracks)[:, None] < running[None, :]  # (N, n): a track's entries
        smooth, smooth_cov = _rts_smoother(filt, filt_cov, pred, pred_cov, jac,
                                           within.sum(axis=1))
        theta = smooth[:, :, THETA]
        ok &= np.isfinite(chi2) & np.all(np.isfinite(smooth) | ~within[..., None], axis=(1, 2))
        ok &= np.all(((theta > 0) & (theta < np.pi)) | ~within, axis=1)
        ok &= np.all(np.isfinite(smooth_cov) | ~within[..., None, None], axis=(1, 2, 3))
    keep = slice(0, 1) if first_state_only else slice(None)
    return KalmanResult(smooth[:, keep], smooth_cov[:, keep], chi2, ok)


def _rts_smoother(filt: np.ndarray, filt_cov: np.ndarray, pred: np.ndarray,
                  pred_cov: np.ndarray, jac: np.ndarray, lengths: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel pass; ``jac[:, k]`` transports module k-1 to k; track i from its
    measurement ``lengths[i] - 1`` inwards. One numba loop over tracks and modules
    (``_rts_rows``); a track whose predicted covariance is not finite or is singular is
    smoothed to NaN from there inwards (the fit then marks it failed)."""
    smooth, smooth_cov = filt.copy(), filt_cov.copy()
    _rts_rows(np.ascontiguousarray(pred), np.ascontiguousarray(pred_cov),
              np.ascontiguousarray(jac), smooth, smooth_cov, lengths.astype(np.int64))
    return smooth, smooth_cov


@numba.njit(cache=True)
def _rts_rows(pred: np.ndarray, pred_cov: np.ndarray, jac: np.ndarray, smooth: np.ndarray,
              smooth_cov: np.ndarray, lengths: np.ndarray) -> None:
    """``_rts_smoother`` in place: ``smooth``/``smooth_cov`` enter holding the filtered states;
    one ``formulas.rts_step`` per track and module, outwards in. A failed step (singular or
    non-finite predicted covariance) leaves NaN there, which every inner step inherits."""
    work, lu, gain, diff = np.empty((6, 6)), np.empty((6, 6)), np.empty((6, 6)), np.empty(6)
    for n in range(smooth.shape[0]):
        for k in range(lengths[n] - 2, -1, -1):
            _formulas.rts_step(smooth[n, k], smooth_cov[n, k], smooth[n, k + 1],
                               smooth_cov[n, k + 1], pred[n, k + 1], pred_cov[n, k + 1],
                               jac[n, k + 1], smooth[n, k], smooth_cov[n, k], work, lu, gain,
                               diff)
