"""traccc's configuration model for the GNN -> CKF bridge, mapped onto taas' CKF and fitter.

Field names and defaults mirror traccc's ``finding_config``, ``fitting_config`` and
``track_params_estimation_config`` (traccc ``core/include/traccc/finding/finding_config.hpp``,
``fitting/fitting_config.hpp``, ``seeding/detail/track_params_estimation_config.hpp``; units
here GeV, mm, rad, ns). Not mirrored: the options of detray's stepper
(``min_step_length_for_next_surface``, ``max_step_counts_for_next_surface``), of GPU memory
(``initial_links_per_seed``) and of traccc's own candidate pruning
(``max_num_tracks_per_measurement``, ``min_measurement_voting_fraction``,
``duplicate_removal_minimum_length``): taas' CKF propagates analytically layer by layer and
removes duplicates by seed deduplication and the ambiguity resolution that follows, so those
options would have nothing to act on. The smoother (traccc ``run_smoother``) always runs in
the final fit.

Each config validates itself (``ValueError`` naming the field) and maps onto the taas config
that runs it: ``TracccFindingConfig.ckf_config`` -> ``CkfConfig``,
``TracccFittingConfig.track_fit_config`` -> ``TrackFitConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from taas.tracking import helix
from taas.tracking.ckf import CkfConfig
from taas.tracking.fitter import TrackFitConfig

#: CKF modes: ``constrained`` offers a proto-track's own measurement on each module where it
#: has one (all measurements elsewhere, as ACTS' TrackFindingFromPrototracksAlgorithm);
#: ``free`` lets the CKF seeded by the proto-track use every measurement.
MODES = ("constrained", "free")

#: How the bridge starts a proto-track: ``triplet`` (three space points spread over its first,
#: middle and last layers, as ACTS' ProtoTracksToParameters, with traccc's parameter estimate
#: and covariance) or ``fit`` (the Kalman fit of the whole proto-track).
SEEDING_METHODS = ("triplet", "fit")


#: Which space points the bridge's supplementary triplet seeding runs on.
SUPPLEMENTARY_SEEDING = ("none", "uncovered", "all")


def _check_positive(obj: object, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = value >= 0 if allow_zero else value > 0
        if not (math.isfinite(value) and ok):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be finite and {bound}, got {value}")


def _check_min_int(obj: object, minimum: int, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {getattr(obj, name)}")


@dataclass(frozen=True)
class TracccFindingConfig:
    """traccc ``finding_config`` (defaults: traccc's), plus ``mode`` and the field ``bz`` (T).

    Mapping onto ``CkfConfig``: ``max_num_branches_per_seed`` -> ``max_branches_per_seed``,
    ``max_num_branches_per_surface`` -> ``max_branches_per_surface``,
    ``min_track_candidates_per_track`` -> ``min_measurements``,
    ``max_track_candidates_per_track`` -> ``max_measurements``, ``max_num_skipping_per_cand``
    -> ``max_holes``, ``max_num_consecutive_skipped`` -> ``max_consecutive_holes``,
    ``chi2_max`` -> ``chi2_cut``, ``mass`` (traccc ``ptc_hypothesis``, a pion) -> ``mass``.
    ``min_p`` / ``min_pT`` (GeV) apply to each seed's start parameters (the bridge drops slower
    seeds, as traccc's finding skips them: ``passes_momentum_cuts``). The CKF's other settings
    keep their defaults. Default ``mode`` ``free``: on two ``medium`` events it finds 0.9993
    of the particles (two_way, pT > 1 GeV) with no fakes, ``constrained`` 0.9988; on a
    ``large`` event 0.9927 / 0.07% fakes against 0.9873 / 0.13%
    (``benchmarks/results/acorn_traccc.json``): the GNN's wrong hits cost the constrained
    search more than the free one loses to its wider choice.
    """

    max_num_branches_per_seed: int = 10
    max_num_branches_per_surface: int = 1
    min_track_candidates_per_track: int = 3
    max_track_candidates_per_track: int = 100
    max_num_skipping_per_cand: int = 3
    max_num_consecutive_skipped: int = 1
    chi2_max: float = 30.0
    min_p: float = 0.1
    min_pT: float = 0.6  # traccc's spelling
    mass: float = helix.PION_MASS
    mode: str = "free"
    bz: float = 2.0

    def __post_init__(self) -> None:
        _check_min_int(self, 1, "max_num_branches_per_seed", "max_num_branches_per_surface")
        _check_min_int(self, 3, "min_track_candidates_per_track")
        _check_min_int(self, 0, "max_num_skipping_per_cand", "max_num_consecutive_skipped")
        if self.max_track_candidates_per_track < self.min_track_candidates_per_track:
            raise ValueError(f"max_track_candidates_per_track "
                             f"({self.max_track_candidates_per_track}) must be >= "
                             f"min_track_candidates_per_track "
                             f"({self.min_track_candidates_per_track})")
        _check_positive(self, "chi2_max")
        _check_positive(self, "min_p", "min_pT", "mass", allow_zero=True)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not math.isfinite(self.bz) or self.bz == 0:
            raise ValueError(f"bz must be finite and non-zero (T), got {self.bz}")

    def ckf_config(self) -> CkfConfig:
        """The ``CkfConfig`` that runs this finding configuration."""
        return CkfConfig(bz=self.bz, chi2_cut=self.chi2_max,
                         max_branches_per_surface=self.max_num_branches_per_surface,
                         max_branches_per_seed=self.max_num_branches_per_seed,
                         max_holes=self.max_num_skipping_per_cand,
                         max_consecutive_holes=self.max_num_consecutive_skipped,
                         min_measurements=self.min_track_candidates_per_track,
                         max_measurements=self.max_track_candidates_per_track, mass=self.mass)


@dataclass(frozen=True)
class TracccFittingConfig:
    """traccc ``fitting_config`` (defaults: traccc's), plus the field ``bz`` (T).

    ``n_iterations`` -> ``TrackFitConfig.max_iterations``; ``min_p`` / ``min_pT`` (GeV): fitted
    tracks below them are dropped (``passes_momentum_cuts``: the fit method's starts);
    ``covariance_inflation_factor``:
    traccc inflates the covariance of a fit's input parameters by it so that the fit forgets
    them; the bridge does the same to a fitted proto-track's covariance before it starts the
    CKF (the CKF collects the measurements again and must not count them twice).
    """

    n_iterations: int = 1
    min_p: float = 0.1
    min_pT: float = 0.6  # traccc's spelling
    covariance_inflation_factor: float = 1e3
    mass: float = helix.PION_MASS
    bz: float = 2.0

    def __post_init__(self) -> None:
        _check_min_int(self, 1, "n_iterations")
        _check_positive(self, "min_p", "min_pT", "mass", allow_zero=True)
        _check_positive(self, "covariance_inflation_factor")
        if self.covariance_inflation_factor < 1:
            raise ValueError(f"covariance_inflation_factor must be >= 1, "
                             f"got {self.covariance_inflation_factor}")
        if not math.isfinite(self.bz) or self.bz == 0:
            raise ValueError(f"bz must be finite and non-zero (T), got {self.bz}")

    def track_fit_config(self) -> TrackFitConfig:
        """The ``TrackFitConfig`` that runs this fitting configuration."""
        return TrackFitConfig(bz=self.bz, max_iterations=self.n_iterations, mass=self.mass)


@dataclass(frozen=True)
class TracccSeedingConfig:
    """The bridge's settings: how proto-tracks become CKF seeds with start parameters.

    ``method``: ``SEEDING_METHODS`` (the default was measured: see ``traccc_bridge.stages``);
    ``initial_sigma`` (loc0 mm, loc1 mm, phi rad, theta rad, q/p e/GeV, t ns),
    ``initial_sigma_qopt`` (e/GeV), ``initial_sigma_pt_rel``, ``initial_inflation``: traccc's
    ``track_params_estimation_config`` (1 mm, 1 mm, 1 deg, 1 deg, 0, 1 ns; 0.1 e/GeV; 0.1;
    time variance x100) for triplet starts; ``n_iterations`` and ``covariance_inflation_factor``:
    the ``fit`` method's ``TracccFittingConfig``; ``min_layers``: distinct (volume, layer)
    pairs a proto-track needs for a seed (3, as ACTS); ``seeds_per_prototrack``: triplets per
    proto-track (``traccc_bridge.bridge.seed_triplets``: the first as ACTS, the others
    further in from the ends, tried only if the earlier ones failed; 3 by default: with
    supplementary seeding of the whole event, 1 / 3 / 6 found 0.9917 / 0.9927 / 0.9932 of the
    ``large`` event's particles and 0.9993 of ``medium``'s with each, the events and the
    harness of ``benchmarks/acorn_traccc.py``; every triplet costs bridge time);
    ``supplementary_seeding``: also seed (``taas.seeding``, its default configuration), for
    the particles the GNN lost, the space points no seeded proto-track lists (``uncovered``),
    all space points (``all``) or none (``none``) (``traccc_bridge.bridge.supplementary_seeds``).
    Default ``all``: on a ``large`` event (16000 particles, 194k measurements) the ``free``
    CKF finds 0.9594 / 0.9633 / 0.9927 of the particles (two_way, pT > 1 GeV) with ``none``
    / ``uncovered`` / ``all`` (fakes 0.21% / 0.20% / 0.07%), on two ``medium`` events 0.9984
    / 0.9986 / 0.9993 (no fakes), for 0.16 s more per medium event
    (``benchmarks/results/acorn_traccc.json``); ``supplementary_threads``: host threads of
    that seeding (``SeedingConfig.threads``: the same seeds for any count). It is the largest
    host step of ``acorn_traccc`` on a GPU, where the device waits for it
    (``benchmarks/results/host_budget.json``); 1 by default, for a laptop and for one instance
    per core.
    """

    method: str = "triplet"
    initial_sigma: tuple[float, ...] = (1.0, 1.0, math.radians(1.0), math.radians(1.0), 0.0,
                                        1.0)
    initial_sigma_qopt: float = 0.1
    initial_sigma_pt_rel: float = 0.1
    initial_inflation: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 100.0)
    n_iterations: int = 1
    covariance_inflation_factor: float = 1e3
    min_layers: int = 3
    seeds_per_prototrack: int = 3
    supplementary_seeding: str = "all"
    supplementary_threads: int = 1
    mass: float = helix.PION_MASS
    bz: float = 2.0

    def __post_init__(self) -> None:
        if self.method not in SEEDING_METHODS:
            raise ValueError(f"method must be one of {SEEDING_METHODS}, got {self.method!r}")
        for name in ("initial_sigma", "initial_inflation"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)  # JSON gives lists
            if len(values) != 6 or not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"{name} must be 6 finite values >= 0, got {values}")
        if not all(v > 0 for v in self.initial_inflation):
            raise ValueError(f"initial_inflation must be > 0, got {self.initial_inflation}")
        _check_positive(self, "initial_sigma_qopt", "initial_sigma_pt_rel", allow_zero=True)
        _check_min_int(self, 3, "min_layers")
        _check_min_int(self, 1, "seeds_per_prototrack", "supplementary_threads")
        if self.supplementary_seeding not in SUPPLEMENTARY_SEEDING:
            raise ValueError(f"supplementary_seeding must be one of {SUPPLEMENTARY_SEEDING}, "
                             f"got {self.supplementary_seeding!r}")
        # the fitting part validates the rest (n_iterations, inflation, mass, bz)
        self.fitting()

    def fitting(self) -> TracccFittingConfig:
        """The fit that starts proto-tracks with the ``fit`` method."""
        return TracccFittingConfig(n_iterations=self.n_iterations,
                                   covariance_inflation_factor=self.covariance_inflation_factor,
                                   mass=self.mass, bz=self.bz)
