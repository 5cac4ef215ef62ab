"""Residuals and pulls of fitted track parameters against truth.

A fit is judged by two numbers per parameter: the residual width (resolution) and the pull
width, residual / sqrt(fitted variance), which is 1 when the covariance is right. Parameters are
the ACTS bound set ``(loc0, loc1, phi, theta, q/p, t)`` (``Tracks.params``); on a perigee
surface loc0 and loc1 are the transverse and longitudinal impact parameters d0 and z0, so they
are reported under those names when ``perigee=True``.

The caller supplies the truth parameters of each track, expressed on the same reference surface
as the fit (typically the truth particle's perigee parameters for matched tracks): how to get
there depends on the propagator, which this module does not own.
"""

from __future__ import annotations

import numpy as np

from taas.errors import InputError

BOUND_NAMES = ("loc0", "loc1", "phi", "theta", "qop", "t")
PERIGEE_NAMES = ("d0", "z0", "phi", "theta", "qop", "t")


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Map angles to [-pi, pi): a phi residual across the +-pi seam is small, not 2 pi."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def pulls(params: np.ndarray, cov: np.ndarray, truth_params: np.ndarray, *,
          perigee: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Per parameter name: ``{"residual": fit - truth, "pull": residual / sigma}`` per track.

    ``params`` and ``truth_params`` are (n, 6), ``cov`` (n, 6, 6). A non-positive or non-finite
    variance gives a NaN pull (the residual stays), so a broken covariance shows up in
    ``summarize`` as missing pulls rather than as a wrong width.
    """
    params = np.asarray(params, np.float64)
    truth = np.asarray(truth_params, np.float64)
    cov = np.asarray(cov, np.float64)
    n = len(params)
    if params.shape != (n, 6) or truth.shape != (n, 6) or cov.shape != (n, 6, 6):
        raise InputError(f"pulls: expected params (n, 6), truth (n, 6), cov (n, 6, 6); got "
                         f"{params.shape}, {truth.shape}, {cov.shape}")
    residual = params - truth
    residual[:, 2] = wrap_angle(residual[:, 2])
    var = np.diagonal(cov, axis1=1, axis2=2)
    ok = np.isfinite(var) & (var > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.where(ok, residual / np.sqrt(np.where(ok, var, 1.0)), np.nan)
    names = PERIGEE_NAMES if perigee else BOUND_NAMES
    return {name: {"residual": residual[:, i], "pull": pull[:, i]}
            for i, name in enumerate(names)}


def summarize(values: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float | int | None]]:
    """Mean and standard deviation of residuals and pulls, per parameter, finite entries only.

    Also a robust width (half the 16-84 % interval) that a few wild tracks cannot inflate.
    """
    out: dict[str, dict[str, float | int | None]] = {}
    for name, kinds in values.items():
        row: dict[str, float | int | None] = {}
        for kind, arr in kinds.items():
            a = np.asarray(arr, np.float64)
            a = a[np.isfinite(a)]
            row[f"{kind}_n"] = len(a)
            if len(a):
                q16, q84 = np.quantile(a, [0.15865525393145707, 0.8413447460685429])
                row[f"{kind}_mean"] = float(a.mean())
                row[f"{kind}_std"] = float(a.std(ddof=1)) if len(a) > 1 else 0.0
                row[f"{kind}_width68"] = float((q84 - q16) / 2)
            else:
                row[f"{kind}_mean"] = row[f"{kind}_std"] = row[f"{kind}_width68"] = None
        out[name] = row
    return out
