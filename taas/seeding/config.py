"""Cuts of the triplet seeding, with their sources and the reasons for any departure.

Defaults follow ACTS' ``GridTripletSeedingAlgorithm`` (pyacts 48.1.0, as configured by
``Examples/Scripts/Python/full_chain_test.py`` for the Generic detector) and traccc's
``seedfinder_config`` / ``seedfilter_config``, tuned for the ACTS Generic (= TrackML) detector:
pixel barrel layers at r = 32, 72, 116, 172 mm, pixel endcap disks at |z| = 600..1500 mm, strips
beyond r = 200 mm. Units: mm, MeV, tesla.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

#: pT [MeV] = PT_PER_TESLA_MM * B [T] * R [mm] for a unit charge (c = 299.792458 mm/ns).
PT_PER_TESLA_MM = 0.299792458


@dataclass(frozen=True)
class SeedingConfig:
    """Named, validated cuts of the triplet seed finder (mm, MeV, T).

    Field comments give the ACTS (``GridTripletSeedingAlgorithm.Config``) and traccc
    (``seedfinder_config``) equivalents and defaults.
    """

    # --- space point selection --------------------------------------------------------------
    #: Space points with r outside [r_min, r_max] are not used. r_max = 200 mm keeps the pixel
    #: detector only, the standard choice for the Generic detector (traccc rMax = 200; ACTS
    #: rMax = 600 but its geometry selection file keeps pixels only). r_min = 25 mm sits below
    #: the innermost pixel layer (32 mm) and bounds the impact-parameter term of the phi window.
    r_min: float = 25.0
    r_max: float = 200.0
    #: z extent of the space points used (traccc +-2000 mm; the pixel endcaps end at 1500 mm).
    z_min: float = -2000.0
    z_max: float = 2000.0
    #: Middle space points only from this r range (ACTS rMinMiddle/rMaxMiddle = 60/120 mm).
    #: Widened to 160 mm so that high-|eta| tracks whose middle hit lies on an endcap disk
    #: between 120 and 160 mm still have a middle candidate.
    r_middle_min: float = 60.0
    r_middle_max: float = 160.0

    # --- doublet cuts -----------------------------------------------------------------------
    #: r distance between middle and bottom space points. ACTS' generic defaults are
    #: deltaRMin/Max = 5/270 mm; traccc tunes deltaRMax to 80 mm for this detector
    #: (``seedfinder_config``), and so do we: the pixel barrel layers are 40, 44 and 56 mm
    #: apart, a skipped layer 84 mm or more, so 80 mm keeps the doublets of neighbouring layers
    #: and drops the layer-skipping ones, whose z windows are the widest (the collision region
    #: projected over the longest lever arm) on the densest layer. On the seed-11 events that
    #: halves the seeding time of a ``large`` event and loses a pure seed for 0.2% (``medium``)
    #: to 0.4% (``large``) of the fiducial particles, mostly tracks with a missing pixel hit
    #: (``benchmarks/seeding_shapes.py``).
    delta_r_bottom_min: float = 5.0
    delta_r_bottom_max: float = 80.0
    #: r distance between top and middle space points (same choice as for bottoms).
    delta_r_top_min: float = 5.0
    delta_r_top_max: float = 80.0
    #: Maximum |cot(theta)| of a doublet: 7.40627 = sinh(2.7), i.e. |eta| < 2.7 (the classic
    #: ACTS SeedFinderConfig default; the Generic detector's pixels reach |eta| ~ 2.7-3).
    cot_theta_max: float = 7.40627
    #: z range at the beam line that a doublet must point to. ACTS uses +-150 mm, which loses
    #: every particle of a vertex beyond 2.7 sigma of the 55.5 mm beam spot that ACTS' own
    #: full chain simulates (about 0.7% of the vertices, all their particles). +-200 mm is
    #: 3.6 sigma (0.03% of the vertices). traccc's +-250 mm (4.5 sigma) widens every doublet's
    #: z window by a quarter, and the doublet count grows with density squared: at 194k space
    #: points +-200 mm has 14% fewer bottom doublets and 16% fewer triplet tests, and a higher
    #: seed efficiency (fewer random triplets compete for the best-N-per-middle slots).
    collision_region_min: float = -200.0
    collision_region_max: float = 200.0
    #: Doublet-level helix cut (ACTS interactionPointCut, default off there): a doublet whose
    #: straight line misses the beam line by more than impact_max must be joinable to the beam
    #: line window by a circle no tighter than a min_pt helix. Removes most random doublets
    #: before the quadratic triplet step; the triplet cuts are unchanged.
    interaction_point_cut: bool = True
    #: Cluster-shape filter of doublets (CMS ``ClusterShapeHitFilter``; ``taas.seeding.shapes``):
    #: both clusters of a doublet must be about as long, in cells along u and v, as a straight
    #: track along the doublet's chord makes them. Applied when the caller gives the clusters'
    #: shapes (the seeding stage does). Random doublets mostly join a short cluster to a steep
    #: chord or a long one to a shallow chord; see ``shape_excess_cells`` for what it keeps.
    cluster_shape_cut: bool = True
    #: A cluster may be this many cells longer than the chord predicts (merged clusters,
    #: delta rays, low-pT curvature) ...
    shape_excess_cells: float = 4.0
    #: ... and this many cells shorter (clusters cut by the module edge, cells below threshold).
    #: On a simulated medium event 99.5% of the true pixel doublets of pT > 1 GeV particles
    #: fit both clusters with 4 / 1.5, against 28% of random doublets in the seed windows.
    #: Tighter is faster but costs tracks: 3 / 0.5 took the seeding of seed-11 large events
    #: (194k space points) from 449 to 338 ms and 129k to 109k seeds, but lost 0.12% (medium)
    #: and 0.17% (large) of the CPU chain's two_way efficiency (steep tracks whose end cells
    #: fall below threshold), so the defaults stay.
    shape_deficit_cells: float = 1.5

    # --- triplet cuts -----------------------------------------------------------------------
    #: Minimum transverse momentum (MeV), cut on the triplet's helix radius (traccc minPt =
    #: 500 MeV; ACTS GridTriplet default 400 MeV; the project simulates pT >= 500 MeV). An
    #: event filter that only needs pT > 1 GeV can seed from 900 (10% below, for the triplet's
    #: curvature resolution); against 500 on seed-11 events (2 per preset): fiducial (pT > 1
    #: GeV) particles with a pure seed 3789 -> 3789 (medium), 15097 -> 15096 (large), CPU
    #: chain two_way efficiency 0.9988 -> 0.9988 and 0.99635 -> 0.99631, seeding at 194k space
    #: points 409 -> 316 ms (narrower phi windows), seeds 129k -> 105k, CKF 3.53 -> 3.27 s.
    #: It stays 500 because the 0.5-0.9 GeV tracks count elsewhere: on the TrackML sample they
    #: are 69 of 114 tracks and the TrackML score falls from 0.0148 to 0.0087 without them.
    min_pt: float = 500.0
    #: Magnetic field along z (the ACTS Generic detector examples use a constant 2 T).
    bz: float = 2.0
    #: Maximum transverse impact parameter |d0| of the triplet's circle (ACTS 20 mm, traccc
    #: 10 mm), also the beam line window of the doublet cut and of the phi windows. 1 mm holds
    #: primaries: the transverse beam spot is 12.5 um and the triplet d0 of true primary
    #: triplets (simulated medium preset) is below 0.14 mm for 90% and 1.35 mm for 99% of them
    #: at every pT from 0.5 GeV (the tail: short lever arms in module overlaps, whose tracks
    #: have other seeds), with seed efficiency unchanged from 3 mm. The phi window of an inner
    #: bottom is dominated by the d0 term (3 mm at r = 32 mm is 0.09 rad against 0.04 of
    #: min_pt bending), so 1 mm instead of 3 mm halves the doublets and the triplet tests at
    #: 194k space points (the cost that grows with density squared).
    impact_max: float = 1.0
    #: Number of sigmas of multiple scattering allowed between the two doublets' cot(theta)
    #: (ACTS sigmaScattering = 5, traccc 3).
    sigma_scattering: float = 5.0
    #: Radiation length (x/X0) traversed along a seed, for the Highland scattering angle (ACTS
    #: and traccc radLengthPerSeed = 0.05).
    rad_length_per_seed: float = 0.05
    #: Scattering allowance is evaluated at min(pT, max_pt_scattering) so that very stiff
    #: triplets keep a floor of tolerance (traccc maxPtScattering = 10 GeV).
    max_pt_scattering: float = 10_000.0
    #: Nominal space point position uncertainties (mm) in r and z. The space point table
    #: carries no covariance; 0.1 mm covers pixel pitch (50 um / sqrt(12)) plus alignment slack
    #: (traccc's rAlign/zAlign and sigmaError play this role).
    sp_sigma_r: float = 0.1
    sp_sigma_z: float = 0.1

    # --- seed filter (ACTS SeedFilter / traccc seedfilter_config) --------------------------
    #: Two seeds sharing bottom and middle are "compatible" when their inverse helix diameters
    #: differ by less than this (1/mm; ACTS/traccc deltaInvHelixDiameter = 3e-5).
    delta_inv_helix_diameter: float = 3e-5
    #: Weight added per compatible top space point (ACTS/traccc compatSeedWeight = 200) ...
    #: Default 0 here: tracks at 1.5 < |eta| < 2 leave only three pixel space points below
    #: r_max (their next hit is beyond the pixel disks' reach), so they can never be confirmed,
    #: while at HL-LHC density combinatorial triplets find confirming tops by chance; with 200
    #: the best-N-per-middle filter dropped a quarter of those true seeds (seed efficiency
    #: 94% at 194k space points, 72% at 1.5 < |eta| < 2; 99.7% with 0 and the slope term).
    compat_seed_weight: float = 0.0
    #: ... for at most this many of them (ACTS/traccc compatSeedLimit = 2) ...
    compat_seed_limit: int = 2
    #: ... counting only tops whose radii differ by at least this, i.e. other layers
    #: (ACTS SeedFilterConfig deltaRMin = 5 mm). Confirming tops need a top range reaching two
    #: layers beyond the middle: ``delta_r_top_max`` = 270 mm as ACTS, not the default 80.
    compat_delta_r_min: float = 5.0
    #: The weight loses impact_weight_factor * |d0| (ACTS/traccc impactWeightFactor = 1).
    impact_weight_factor: float = 1.0
    #: The weight loses slope_weight_factor * (delta cot(theta) / allowance)^2, the triplet's
    #: r-z bend between its doublets relative to the error and scattering allowed at its pT
    #: (0..1). Combinatorial triplets fill the allowance evenly, true ones sit near 0.
    #: Ranks the seeds with the impact term instead of the compatible-top bonus.
    slope_weight_factor: float = 1.0
    #: Seed confirmation: keep a seed only if at least this many compatible tops confirm it.
    #: 0 keeps all seeds (ACTS default seedConfirmation = False).
    min_compatible_tops: int = 0
    #: At most this many seeds (best weights) share one middle space point (ACTS/traccc
    #: maxSeedsPerSpM = 5).
    max_seeds_per_middle_sp: int = 5

    # --- grid -------------------------------------------------------------------------------
    #: Each phi bin covers 1/phi_bin_deflection_coverage of the largest azimuthal deflection a
    #: min_pt, impact_max track can have between two seed space points. The kernel scans, per
    #: middle space point and r band, only the bins that the deflection possible between those
    #: radii reaches, so finer bins cost a few more binary searches but scan fewer candidates:
    #: at HL-LHC density the candidates dominate (ACTS phiBinDeflectionCoverage; the earlier
    #: 2, scanning +-2.5 bins for every pair, made the doublet count grow with density squared).
    phi_bin_deflection_coverage: int = 8
    #: Width (mm) of the r bands of the grid. The z and phi windows of a doublet depend on the
    #: partner's r; evaluating them per band (ACTS' r binning of the SP grid) keeps the other
    #: layers' space points, which share the z range, out of the scan.
    r_bin_width: float = 20.0
    #: Upper bound on the number of phi bins (ACTS maxPhiBins).
    max_phi_bins: int = 10_000

    # --- execution --------------------------------------------------------------------------
    #: Host threads sharing one event's middle space points (the kernel releases the GIL; each
    #: thread takes contiguous ranges of middles). The seeds and counters are identical for
    #: any count. 1, the default, is the setting the cpu chain is measured at (events run in
    #: parallel there, one per core); more pays where host cores idle while one event waits
    #: on the seeding, as a GPU model instance does during the bridge's supplementary seeding
    #: (``benchmarks/results/host_budget.json``).
    threads: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ValueError(f"SeedingConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ValueError(f"SeedingConfig.{name} must be >= 0, got {getattr(self, name)}")
        for lo, hi in _ORDERED:
            if not getattr(self, lo) < getattr(self, hi):
                raise ValueError(f"SeedingConfig: {lo} ({getattr(self, lo)}) must be smaller "
                                 f"than {hi} ({getattr(self, hi)})")
        if self.r_min <= self.impact_max:
            raise ValueError(f"SeedingConfig: r_min ({self.r_min}) must exceed impact_max "
                             f"({self.impact_max}): the phi window would span the full circle")
        if self.min_compatible_tops > self.compat_seed_limit:
            raise ValueError("SeedingConfig: min_compatible_tops cannot exceed compat_seed_limit "
                             "(the filter stops counting there)")

    # --- derived quantities ---------------------------------------------------------------
    @property
    def min_helix_radius(self) -> float:
        """Helix radius (mm) of a min_pt track."""
        return self.min_pt / (PT_PER_TESLA_MM * self.bz)

    @property
    def highland(self) -> float:
        """Highland scattering constant (MeV) for rad_length_per_seed, as ACTS' DerivedConfig:
        theta0 = highland / p with 13.6 MeV sqrt(x/X0) (1 + 0.038 ln(x/X0)) (PDG eq. 34.15)."""
        t = self.rad_length_per_seed
        return 13.6 * math.sqrt(t) * (1.0 + 0.038 * math.log(t))

    @property
    def max_phi_deflection(self) -> float:
        """Largest azimuthal difference (rad) between two space points of one seed.

        Bending of a min_pt helix from the beam line to r_max, plus the shift an impact
        parameter of impact_max causes at r_min (phi(r) ~ phi0 + asin(r/2R) + d0/r).
        """
        bend = math.asin(min(1.0, self.r_max / (2.0 * self.min_helix_radius)))
        return bend + math.asin(min(1.0, self.impact_max / self.r_min))

    @property
    def r_band_edges(self) -> np.ndarray:
        """Edges (mm) of the grid's r bands, r_min to r_max in steps of about r_bin_width."""
        n = max(1, math.ceil((self.r_max - self.r_min) / self.r_bin_width))
        return np.linspace(self.r_min, self.r_max, n + 1)

    @property
    def n_phi_bins(self) -> int:
        """Number of phi bins of the space point grid."""
        width = self.max_phi_deflection / self.phi_bin_deflection_coverage
        return max(1, min(self.max_phi_bins, int(2.0 * math.pi / width)))


_POSITIVE = ("r_max", "delta_r_bottom_max", "delta_r_top_max", "cot_theta_max", "min_pt", "bz",
             "impact_max", "rad_length_per_seed", "max_pt_scattering", "max_seeds_per_middle_sp",
             "phi_bin_deflection_coverage", "max_phi_bins", "r_bin_width", "threads")
_NON_NEGATIVE = ("r_min", "delta_r_bottom_min", "delta_r_top_min", "sigma_scattering",
                 "sp_sigma_r", "sp_sigma_z", "delta_inv_helix_diameter", "compat_seed_weight",
                 "compat_seed_limit", "compat_delta_r_min", "impact_weight_factor",
                 "slope_weight_factor", "min_compatible_tops", "shape_excess_cells",
                 "shape_deficit_cells")
_ORDERED = (("r_min", "r_max"), ("z_min", "z_max"), ("r_middle_min", "r_middle_max"),
            ("delta_r_bottom_min", "delta_r_bottom_max"), ("delta_r_top_min", "delta_r_top_max"),
            ("collision_region_min", "collision_region_max"))


def _check_type(name: str, annotation: object, value: object) -> None:
    """Fields are annotated bool, int or float (strings under postponed annotations); a
    float field takes an int, nothing takes a bool by accident, and numbers must be finite."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"SeedingConfig.{name} must be a bool, got {value!r}")
        return
    allowed = (int,) if kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise TypeError(f"SeedingConfig.{name} must be {'an int' if kind == 'int' else 'a number'}"
                        f", got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"SeedingConfig.{name} must be finite, got {value!r}")
