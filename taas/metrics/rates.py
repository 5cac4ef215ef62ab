"""Efficiency, fake rate and duplicate rate, with honest (asymmetric) uncertainties.

Definitions (ACORN ``track_building_stage`` evaluation; ACTS ``TrackFinderPerformanceWriter``):

* tracks that count: ``n_measurements >= min_track_measurements``; shorter ones are dropped
  before anything else, on both the track and the particle side.
* efficiency = fiducial particles with at least one reconstructing track / fiducial particles.
* fake rate = 1 - matched tracks / tracks (a track matched to any particle, fiducial or not, is
  not a fake: a well-reconstructed 0.8 GeV track is not a fake).
* duplicate rate = (reconstructing (track, fiducial particle) pairs - reconstructed fiducial
  particles) / reconstructed fiducial particles: extra tracks per reconstructed particle. It can
  exceed 1, so it gets a Poisson (Garwood) interval on the numerator, not a binomial one.

Efficiency and fake rate get Clopper-Pearson intervals (exact, never outside [0, 1], sensible at
0 and n successes where the normal approximation gives zero width); Wilson is available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from taas.edm.lookup import find_rows
from taas.errors import InputError
from taas.metrics.config import MatchingConfig
from taas.metrics.matching import MatchResult

#: Central 1-sigma coverage: error bars on plots and in metrics.json.
ONE_SIGMA = float(stats.norm.cdf(1.0) - stats.norm.cdf(-1.0))

INTERVALS = ("clopper_pearson", "wilson")


def binomial_interval(k: np.ndarray | int, n: np.ndarray | int, cl: float = ONE_SIGMA,
                      method: str = "clopper_pearson") -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of a binomial proportion k/n at confidence ``cl``.

    n = 0 gives the uninformative [0, 1].
    """
    if method not in INTERVALS:
        raise InputError(f"interval method {method!r} is not one of {list(INTERVALS)}")
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise InputError("binomial_interval: need 0 <= k <= n")
    alpha = 1.0 - cl
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "clopper_pearson":
            lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
            hi = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
        else:
            z = stats.norm.ppf(1 - alpha / 2)
            p = k / n
            den = 1 + z * z / n
            centre = (p + z * z / (2 * n)) / den
            half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
            # exact at the edges, where rounding would leave 1e-16 gaps
            lo = np.where(k > 0, centre - half, 0.0)
            hi = np.where(k < n, centre + half, 1.0)
    empty = n == 0
    lo = np.clip(np.where(empty, 0.0, lo), 0.0, 1.0)
    hi = np.clip(np.where(empty, 1.0, hi), 0.0, 1.0)
    return lo, hi


def poisson_interval(k: np.ndarray | int, cl: float = ONE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Garwood (exact) interval of a Poisson mean given k observed counts."""
    k = np.asarray(k, np.float64)
    alpha = 1.0 - cl
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, stats.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0)
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * (k + 1)) / 2
    return lo, hi


@dataclass(frozen=True)
class Rate:
    """A rate k/n with its interval; ``value`` is NaN when n = 0."""

    value: float
    low: float
    high: float
    numerator: int
    denominator: int

    @property
    def err_low(self) -> float:
        return self.value - self.low

    @property
    def err_high(self) -> float:
        return self.high - self.value

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready (NaN becomes None, since JSON has no NaN)."""
        def clean(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)
        return {"value": clean(self.value), "err_low": clean(self.err_low),
                "err_high": clean(self.err_high), "low": clean(self.low),
                "high": clean(self.high), "numerator": self.numerator,
                "denominator": self.denominator}


def binomial_rate(k: int, n: int, cl: float = ONE_SIGMA,
                  method: str = "clopper_pearson") -> Rate:
    """k/n with a binomial interval."""
    lo, hi = binomial_interval(k, n, cl, method)
    value = k / n if n else float("nan")
    return Rate(float(value), float(lo), float(hi), int(k), int(n))


def duplicate_rate(n_pairs: int, n_reconstructed: int, cl: float = ONE_SIGMA) -> Rate:
    """(pairs - reconstructed) / reconstructed with a Poisson interval on the extra tracks."""
    extra = n_pairs - n_reconstructed
    if extra < 0:
        raise InputError("duplicate_rate: fewer reconstructing pairs than reconstructed particles")
    if n_reconstructed == 0:
        return Rate(float("nan"), float("nan"), float("nan"), int(extra), 0)
    lo, hi = poisson_interval(extra, cl)
    return Rate(extra / n_reconstructed, float(lo) / n_reconstructed,
                float(hi) / n_reconstructed, int(extra), int(n_reconstructed))


def fiducial_mask(pt: np.ndarray, eta: np.ndarray, primary: np.ndarray,
                  n_measurements: np.ndarray, config: MatchingConfig, *,
                  ignore: tuple[str, ...] = ()) -> np.ndarray:
    """Particles passing the fiducial cuts; names in ``ignore`` ("pt", "eta") are not applied.

    Efficiency vs pT is measured on particles passing every cut but pT (and vs eta every cut
    but eta), so the turn-on below ``pt_min`` stays visible.
    """
    unknown = set(ignore) - {"pt", "eta"}
    if unknown:
        raise InputError(f"fiducial_mask: cannot ignore {sorted(unknown)}; valid: ['eta', 'pt']")
    mask = np.asarray(n_measurements) >= config.min_particle_measurements
    if config.primary_only:
        mask &= np.asarray(primary, bool)
    if "pt" not in ignore:
        mask &= np.asarray(pt) >= config.pt_min
    if "eta" not in ignore:
        mask &= np.abs(np.asarray(eta)) <= config.eta_max
    return mask


def track_mask(match: MatchResult, config: MatchingConfig) -> np.ndarray:
    """Tracks long enough to count."""
    return match.n_measurements >= config.min_track_measurements


def reconstructing_pairs(match: MatchResult, config: MatchingConfig) -> np.ndarray:
    """Pairs where a counted track reconstructs its particle (mask over ``match.pair_*``)."""
    return match.pair_reconstructs & track_mask(match, config)[match.pair_track]


def particle_reconstructed(match: MatchResult, particle_ids: np.ndarray,
                           config: MatchingConfig) -> np.ndarray:
    """Per particle in ``particle_ids``: reconstructed by at least one counted track."""
    reco = reconstructing_pairs(match, config)
    return np.isin(np.asarray(particle_ids, np.uint64), match.pair_particle[reco])


def particle_n_reconstructing(match: MatchResult, particle_ids: np.ndarray,
                              config: MatchingConfig) -> np.ndarray:
    """Per particle in ``particle_ids``: the number of counted tracks reconstructing it."""
    reco = reconstructing_pairs(match, config)
    ids, counts = np.unique(match.pair_particle[reco], return_counts=True)
    particle_ids = np.asarray(particle_ids, np.uint64)
    if not len(ids):
        return np.zeros(len(particle_ids), np.int64)
    rows, found = find_rows(ids, particle_ids)
    return np.where(found, counts[rows], 0).astype(np.int64)


def rate_counts(match: MatchResult, particle_ids: np.ndarray, fiducial: np.ndarray,
                config: MatchingConfig) -> dict[str, int]:
    """The integer counts every rate is built from; they add up across events."""
    particle_ids = np.asarray(particle_ids, np.uint64)
    fiducial = np.asarray(fiducial, bool)
    counted = track_mask(match, config)
    n_reco_tracks = particle_n_reconstructing(match, particle_ids, config)
    fid_reco = n_reco_tracks[fiducial]
    return {
        "n_tracks_all": int(match.n_tracks),
        "n_tracks": int(counted.sum()),
        "n_matched_tracks": int((match.matched & counted).sum()),
        "n_fiducial_particles": int(fiducial.sum()),
        "n_reconstructed_particles": int((fid_reco > 0).sum()),
        "n_reconstructing_pairs": int(fid_reco.sum()),
        "n_duplicated_particles": int((fid_reco > 1).sum()),
    }


def rates_from_counts(counts: dict[str, int], cl: float = ONE_SIGMA,
                      method: str = "clopper_pearson") -> dict[str, Rate]:
    """Efficiency, fake rate and duplicate rate from (possibly summed) ``rate_counts``."""
    n_fake = counts["n_tracks"] - counts["n_matched_tracks"]
    return {
        "efficiency": binomial_rate(counts["n_reconstructed_particles"],
                                    counts["n_fiducial_particles"], cl, method),
        "fake_rate": binomial_rate(n_fake, counts["n_tracks"], cl, method),
        "duplicate_rate": duplicate_rate(counts["n_reconstructing_pairs"],
                                         counts["n_reconstructed_particles"], cl),
    }


def efficiency_histogram(x: np.ndarray, passed: np.ndarray, bins: np.ndarray,
                         cl: float = ONE_SIGMA,
                         method: str = "clopper_pearson") -> dict[str, np.ndarray]:
    """Efficiency in bins of ``x`` (values outside the bin range are left out).

    Returns ``edges``, ``total``, ``passed``, ``efficiency`` (NaN in empty bins), ``low`` and
    ``high`` (interval bounds).
    """
    x = np.asarray(x, np.float64)
    passed = np.asarray(passed, bool)
    bins = np.asarray(bins, np.float64)
    if x.shape != passed.shape:
        raise InputError("efficiency_histogram: x and passed differ in length")
    if bins.ndim != 1 or len(bins) < 2 or np.any(np.diff(bins) <= 0):
        raise InputError("efficiency_histogram: bins must be increasing edges (at least 2)")
    total, _ = np.histogram(x, bins)
    good, _ = np.histogram(x[passed], bins)
    lo, hi = binomial_interval(good, total, cl, method)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(total > 0, good / np.maximum(total, 1), np.nan)
    return {"edges": bins, "total": total, "passed": good, "efficiency": eff,
            "low": lo, "high": hi}
