"""Combinatorial Kalman filter (CKF): seeds -> track candidates, all candidates stepped together.

The algorithm follows ACTS' ``CombinatorialKalmanFilter`` (as configured by its full-chain
example for the Generic detector) in what it finds, and traccc's GPU CKF
(``core/include/traccc/finding/``: ``find_tracks`` with its ``propagate_to_next_surface``,
``find_tracks`` kernel and ``build_tracks`` steps) in how: every active candidate of a batch of
seeds advances one layer per step, and each step is a handful of array operations over all
(candidate, module, measurement) combinations, never a Python loop over candidates.

Per batch of seeds (best seed quality first):

1. **seed fit** ("stayOnSeed"): helix estimate with a loose prior (``estimation``) from the
   space points taken top -> middle -> bottom, Kalman updates with the three measurements
   (propagation with multiple scattering in between): the seed's best state on the bottom
   module. Moving inwards, it starts the inward search; turned round, the outward one.
2. **steps**, for all active candidates at once:
   a. next layer crossed by the helix (``navigation.Navigation.next_layer``); none -> finished;
   b. candidate modules there (``candidate_modules``), less those a straight line from the
      layer crossing misses by more than the helix can bend (about four in five pairs), exact
      propagation with the transport Jacobian to each, ``C' = J (C + Q) J^T`` with Q the
      scattering of the module left behind;
      pairs whose predicted local position is outside the module bounds (+ tolerance) drop out.
      No pair left: a gap, the candidate tries the following layer from the same state;
   c. every measurement on the surviving modules is tested with the predicted chi2; those under
      ``chi2_cut`` compete per candidate and the best ``max_branches_per_surface`` (over all
      modules of the layer) each make a new branch after a Kalman update (ACTS
      ``numMeasurementsCutOff``). Where the track crosses two overlapping modules of the layer,
      each branch then also takes the best compatible measurement on the second module (no
      extra branching): ACTS, navigating module by module, collects those overlap hits too;
   d. a candidate that crossed a module without a compatible measurement gets a hole and goes
      on with the predicted state; more than ``max_holes`` holes *in total* (traccc's
      ``max_num_skipping_per_cand``) end it;
   e. at most ``max_branches_per_seed`` candidates survive per seed, lowest chi2/ndf first.
   The outward search starts at the bottom space point and walks *every* layer: a candidate
   short of its seed's top space point moves onto the next seed space point (its measurement
   added without a second update: the start state holds it already) unless a layer lies
   before it, which is searched like any other. Seeds that skip a layer (about half of a
   particle's seeds) thus still get that layer's hit, so found tracks hold the measurements
   of the particle's other seeds and deduplication skips those.
   Before the outward steps, the seed is run *inwards* (ACTS ``twoWay``): stepped towards the
   beam line from the fitted bottom state; the best inward branch's measurements are put in
   front of the seed's.
3. **output**: every finished candidate with ``>= min_measurements`` measurements, with its last
   filtered state. Branches store only (parent node, measurement), so measurement lists are
   rebuilt once at the end by walking parent pointers (traccc ``build_tracks``).
4. **given starts and constraints** (the GNN -> CKF bridge, ``traccc_bridge``): ``starts``
   replaces the helix estimate of step 1 by given parameters and covariance (on any module,
   moving outwards: traccc's bound seed parameters, or a fitted proto-track), transported to
   the top space point's module before the seed fit; ``seed_measurements`` restricts each
   seed's candidates, on every module where its list has a measurement, to that list (ACTS'
   ``TrackFindingFromPrototracksAlgorithm``: elsewhere all measurements compete).
5. **seed deduplication** (ACTS ``seedDeduplication``): before a batch runs, seeds with
   ``dedup_used`` (default 2) of their three measurements on tracks already found are skipped:
   two shared hits almost always mean the same particle, and at the ``medium`` preset this
   processes 35% fewer seeds than requiring all three, at equal efficiency. ACTS runs seeds
   one at a time, so every seed sees all earlier tracks; here a seed sharing a measurement
   with a better seed of the same batch is deferred to a later batch (``defer_shared``),
   which keeps batches large and still lets most of a particle's other seeds be skipped.
6. **device hook** (``kernels``): the navigation (next layer, crossable modules) and the
   track arithmetic -- free states, helix steps, the field, propagation of (candidate,
   module) pairs with the transport Jacobian and material noise, the chi2 of measurements
   and the Kalman update -- go through a ``CkfKernels`` object: ``NUMBA_KERNELS`` (numpy +
   numba, the default) or ``taas.tracking.batched.ckf_kernels.TorchCkfKernels`` (the same
   formulas in torch on a torch device). The candidates' bookkeeping -- branching, holes,
   overlaps, the per-seed cap, the measurement tree and its walk -- is written once against
   the hook's ``arrays`` (``taas.tracking.arrays.ArrayOps``: numpy, or torch on the device),
   so within a batch the candidates stay where the kernels work, as traccc's GPU CKF keeps
   them. What the host keeps, and so what crosses (``arrays.upload`` / ``download``, counted
   by the torch hook): the event's measurements, once; per batch the seed selection and
   deduplication (sequential, ACTS' one-seed-at-a-time order) with the seeds' estimates or
   given starts, and the found tracks' measurements back; the tracks at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import NamedTuple, Protocol

import numba
import numpy as np

from taas.detector.detector import Detector
from taas.detector.field import Field
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds, Tracks
from taas.errors import InputError
from taas.tracking import helix
from taas.tracking.arrays import HOST, Array, ArrayOps
from taas.tracking.batched.flavours import NUMBA as _formulas
from taas.tracking.estimation import estimate_parameters
from taas.tracking.field import field_of, point_bz, step_bz
from taas.tracking.fitter import check_measurements
from taas.tracking.kalman import kalman_update
from taas.tracking.material import X0_SILICON, add_scattering, material_model, slab_noise
from taas.tracking.measurement_errors import (
    CALIBRATED,
    check_error_source,
    measurement_variances,
)
from taas.tracking.navigation import Navigation, group_by_module
from taas.tracking.parameters import PHI, QOP, THETA, bound_to_free, direction
from taas.tracking.propagation import propagate


@dataclass(frozen=True)
class CkfConfig:
    """Settings of the CKF (defaults: ACTS full-chain example for the Generic detector).

    ``bz``: field (T); ``chi2_cut``: predicted chi2 of a compatible measurement (ACTS
    ``chi2CutOffMeasurement`` 15); ``max_branches_per_surface``: best compatible measurements
    that branch per layer (ACTS ``numMeasurementsCutOff`` 2); ``max_branches_per_seed``: live
    candidates per seed; ``max_holes``: total holes a candidate may collect (traccc
    ``max_num_skipping_per_cand``); ``min_measurements``: shortest output track (ACTS
    TrackSelector ``minMeasurements`` 7); ``seed_batch_size``: seeds per batch (deduplication
    acts between batches; larger batches vectorise better); ``deduplicate_seeds``: skip seeds
    with ``dedup_used`` (of 3) measurements on found tracks; ``bounds_tolerance``: mm by which
    a predicted position may lie outside a module and still count as crossing it;
    ``max_steps``: layers a candidate may visit; ``multiple_scattering``/``x0``/``mass``:
    material model (``taas.tracking.material``); ``navigation_margin``: mm added to layer and
    module extents in the navigation grids; ``defer_shared``: a seed sharing this many
    measurements with a better seed of the batch waits for a later batch (0: never);
    ``overlaps``: collect a second hit where a layer's modules overlap; ``two_way``: also
    search inwards of the seed; ``max_consecutive_holes``: holes in a row that end a candidate
    (traccc ``max_num_consecutive_skipped``; None: no limit); ``max_measurements``: a candidate
    with this many measurements stops (traccc ``max_track_candidates_per_track``; None: no
    limit); ``measurement_errors``: measurement variances of the chi2 test and the updates,
    the same source as the fit's (``taas.tracking.measurement_errors``).
    """

    bz: float = 2.0
    chi2_cut: float = 15.0
    max_branches_per_surface: int = 2
    max_branches_per_seed: int = 10
    max_holes: int = 2
    min_measurements: int = 7
    seed_batch_size: int = 2048
    deduplicate_seeds: bool = True
    dedup_used: int = 2
    defer_shared: int = 1
    overlaps: bool = True
    two_way: bool = True
    bounds_tolerance: float = 1.0
    max_steps: int = 40
    multiple_scattering: bool = True
    x0: float = X0_SILICON
    mass: float = helix.PION_MASS
    navigation_margin: float = 2.0
    max_consecutive_holes: int | None = None
    max_measurements: int | None = None
    measurement_errors: str = CALIBRATED

    def __post_init__(self) -> None:
        if not np.isfinite(self.bz) or self.bz == 0:
            raise ValueError(f"bz must be finite and non-zero (T), got {self.bz}")
        if not self.chi2_cut > 0:
            raise ValueError(f"chi2_cut must be > 0, got {self.chi2_cut}")
        for name in ("max_branches_per_surface", "max_branches_per_seed", "seed_batch_size",
                     "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.dedup_used <= 3:
            raise ValueError(f"dedup_used must be in [1, 3], got {self.dedup_used}")
        if not 0 <= self.defer_shared <= 3:
            raise ValueError(f"defer_shared must be in [0, 3], got {self.defer_shared}")
        if self.max_holes < 0:
            raise ValueError(f"max_holes must be >= 0, got {self.max_holes}")
        if self.min_measurements < 3:
            raise ValueError(f"min_measurements must be >= 3, got {self.min_measurements}")
        for name in ("bounds_tolerance", "navigation_margin"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 (mm), got {getattr(self, name)}")
        if not self.x0 > 0:
            raise ValueError(f"x0 must be > 0 (mm), got {self.x0}")
        if not self.mass >= 0:
            raise ValueError(f"mass must be >= 0 (GeV), got {self.mass}")
        if self.max_consecutive_holes is not None and self.max_consecutive_holes < 0:
            raise ValueError(f"max_consecutive_holes must be >= 0 or None, "
                             f"got {self.max_consecutive_holes}")
        if self.max_measurements is not None and self.max_measurements < self.min_measurements:
            raise ValueError(f"max_measurements ({self.max_measurements}) must be >= "
                             f"min_measurements ({self.min_measurements}) or None")
        check_error_source(self.measurement_errors)


class SeedStarts(NamedTuple):
    """Given start parameters per seed (``find_tracks``' ``starts``): bound parameters and
    covariance on module ``module_key``, moving outwards along the track."""

    module_key: np.ndarray  #: (n,) uint64, on the host
    params: Array  #: (n, 6), on the host or where the CKF's kernels work
    covariance: Array  #: (n, 6, 6), as ``params``


class Prediction(NamedTuple):
    """States propagated to target modules (``CkfKernels.predict``), one row per pair."""

    ok: Array  #: (P,) bool: the intersection exists
    path: Array  #: (P,) mm
    params: Array  #: (P, 6) bound parameters on the target module
    cov: Array  #: (P, 6, 6) ``J (C + Q_module) J^T`` (+ ``Q_passive``)


class CkfKernels(Protocol):
    """The CKF's device hook (module docstring, step 6): where its arrays live (``arrays``)
    and the navigation and track arithmetic on them.

    Every argument and result is an array of ``arrays`` (numpy for the CPU kernels, tensors
    on a torch device for the torch ones), track axis first. The candidates' bookkeeping
    between the calls is written against the same ``arrays``, so within a batch of seeds the
    candidates never leave the device.
    """

    @property
    def arrays(self) -> ArrayOps:
        """The namespace the hook's arrays belong to, and their way across the host boundary."""
        ...

    def free_states(self, detector: Detector, params: Array, rows: Array) -> Array:
        """Free vectors (n, 8) of bound parameters ``params`` (n, 6) on module ``rows``."""
        ...

    def point_field(self, detector: Detector, config: CkfConfig, free: Array) -> float | Array:
        """The effective field at free states (n, 8) (``taas.tracking.field.point_bz``)."""
        ...

    def helix_at(self, free: Array, s: Array, bz: float | Array, mass: float) -> Array:
        """Free states after paths ``s`` along their helices (``taas.tracking.helix``)."""
        ...

    def layer_of(self, navigation: Navigation, rows: Array) -> Array:
        """The navigation layer of module ``rows``."""
        ...

    def inside_bounds(self, detector: Detector, rows: Array, u: Array, v: Array,
                      tolerance: float) -> Array:
        """``Detector.inside_bounds``: local (u, v) within module ``rows`` (+ tolerance)."""
        ...

    def next_layer(self, navigation: Navigation, free: Array, s_min: Array, exclude: Array,
                   bz: float | Array, s_max: float | Array) -> tuple[Array, Array]:
        """``Navigation.next_layer``: the nearest layer beyond ``s_min`` per free state (n, 8)
        and the path to it."""
        ...

    def crossable_modules(self, detector: Detector, navigation: Navigation, layer: Array,
                          at: Array, config: CkfConfig) -> tuple[Array, Array]:
        """(candidate, module row) pairs, ordered by candidate: the modules of ``layer`` that
        each free state ``at`` (n, 8) on the layer's reference surface may cross
        (``Navigation.candidate_modules``), less those its straight line misses by more than
        the helix can bend (``line_misses``)."""
        ...

    def predict(self, detector: Detector, params: Array, cov: Array, rows: Array,
                pair_c: Array, targets: Array, config: CkfConfig, *,
                passive: bool) -> Prediction:
        """Candidates ``params`` (C, 6) / ``cov`` (C, 6, 6) on modules ``rows`` (C,),
        propagated to ``targets`` (P,) for the pairs ``pair_c`` (P,): the material noise of
        the module left behind added before the transport, the passive surfaces' on the way
        after it when ``passive``."""
        ...

    def transport(self, detector: Detector, params: Array, cov: Array, src: Array, dst: Array,
                  config: CkfConfig) -> tuple[Array, Array, Array]:
        """Bound parameters (n, 6) and covariances (n, 6, 6) on modules ``src`` carried to
        modules ``dst`` along their helices, no material (``J C J^T``), and whether each
        arrived: a given start brought to its seed's top module."""
        ...

    def chi2(self, params: Array, cov: Array, meas: Array, var: Array) -> Array:
        """Predicted chi2 (K,) of 2D measurements ``meas`` / variances ``var`` (K, 2)."""
        ...

    def update(self, params: Array, cov: Array, meas: Array, var: Array,
               ) -> tuple[Array, Array, Array]:
        """Gain-matrix update: filtered parameters, covariances and chi2 increments."""
        ...


def pair_step_bz(field: Field, centers: Array, params: Array, rows: Array, pair_c: Array,
                 targets: Array, xp: ModuleType = np) -> float | Array:
    """The effective field of each (candidate ``pair_c``, target module) step of a prediction
    (``taas.tracking.field.step_bz``; module ``centers`` (n_modules, 3) and the other arrays
    of ``xp``): one home for every CKF kernel, whatever its device."""
    return step_bz(field, centers[rows[pair_c]], centers[targets], params[pair_c, THETA], xp)


class NumbaKernels:
    """The CPU kernels on numpy arrays (``HOST``): numba navigation
    (``taas.tracking.navigation``) and propagation (``taas.tracking.propagation``), numpy
    noise and chi2, ``taas.tracking.kalman``'s update."""

    arrays: ArrayOps = HOST

    def free_states(self, detector: Detector, params: Array, rows: Array) -> Array:
        return bound_to_free(params, detector.center[rows], detector.rotation[rows])

    def point_field(self, detector: Detector, config: CkfConfig, free: Array) -> float | Array:
        return point_bz(field_of(detector, config.bz), free)

    def helix_at(self, free: Array, s: Array, bz: float | Array, mass: float) -> Array:
        return helix.helix_at(free, s, bz, mass)

    def layer_of(self, navigation: Navigation, rows: Array) -> Array:
        return navigation.module_layer[rows]

    def inside_bounds(self, detector: Detector, rows: Array, u: Array, v: Array,
                      tolerance: float) -> Array:
        return detector.inside_bounds(rows, u, v, tolerance)

    def next_layer(self, navigation: Navigation, free: Array, s_min: Array, exclude: Array,
                   bz: float | Array, s_max: float | Array) -> tuple[Array, Array]:
        return navigation.next_layer(free, s_min, exclude, bz, s_max)

    def crossable_modules(self, detector: Detector, navigation: Navigation, layer: Array,
                          at: Array, config: CkfConfig) -> tuple[Array, Array]:
        offsets, modules = navigation.candidate_modules(layer, at[:, helix.POS],
                                                        at[:, helix.DIR],
                                                        config.bounds_tolerance)
        pair_c = np.repeat(np.arange(len(layer)), np.diff(offsets))
        near = ~line_misses(detector, at, pair_c, modules, config)
        return pair_c[near], modules[near]

    def predict(self, detector: Detector, params: Array, cov: Array, rows: Array,
                pair_c: Array, targets: Array, config: CkfConfig, *,
                passive: bool) -> Prediction:
        center, rotation = detector.center, detector.rotation
        src = rows[pair_c]
        bz = pair_step_bz(field_of(detector, config.bz), center, params, rows, pair_c, targets)
        prop = propagate(params[pair_c], center[src], rotation[src], center[targets],
                         rotation[targets], bz=bz, mass=config.mass)
        noisy = _scatter(detector, params, cov, rows, config)
        jac = prop.transport
        pred_cov = jac @ noisy[pair_c] @ np.swapaxes(jac, 1, 2)
        if passive:
            pred_cov = pred_cov + _passive_noise(detector, params[pair_c], src, targets,
                                                 prop.path, config)
        return Prediction(prop.ok, prop.path, prop.params, pred_cov)

    def transport(self, detector: Detector, params: Array, cov: Array, src: Array, dst: Array,
                  config: CkfConfig) -> tuple[Array, Array, Array]:
        center, rotation = detector.center, detector.rotation
        bz = step_bz(field_of(detector, config.bz), center[src], center[dst], params[:, THETA])
        prop = propagate(params, center[src], rotation[src], center[dst], rotation[dst], bz=bz,
                         mass=config.mass)
        return prop.params, prop.transport @ cov @ np.swapaxes(prop.transport, 1, 2), prop.ok

    def chi2(self, params: Array, cov: Array, meas: Array, var: Array) -> Array:
        return _chi2(params, cov, meas, var)

    def update(self, params: Array, cov: Array, meas: Array, var: Array,
               ) -> tuple[Array, Array, Array]:
        return kalman_update(params, cov, meas, var)


#: The default kernels (stateless, shared).
NUMBA_KERNELS = NumbaKernels()


@dataclass
class CkfStats:
    """Counters of one ``find_tracks`` call (for reports and benchmarks)."""

    seeds: int = 0  #: seeds given
    seeds_processed: int = 0  #: seeds not skipped by deduplication (and with a valid fit)
    branches: int = 0  #: Kalman-updated branches created (after the seed)
    pairs: int = 0  #: (candidate, module) pairs intersected
    candidates: int = 0  #: finished candidates (before the min_measurements cut)
    tracks: int = 0  #: tracks output
    steps: list[int] = field(default_factory=list)  #: steps per batch


class _Event:
    """Per-event measurement data in the arrays the steps index, where the kernels work; the
    module rows also on the host (for the seed batches and constraints built there)."""

    def __init__(self, detector: Detector, measurements: Measurements,
                 errors: str = CALIBRATED, kernels: CkfKernels = NUMBA_KERNELS) -> None:
        self.host_rows = detector.index_of(measurements["module_key"],
                                           column="measurements.module_key")
        offsets, order = group_by_module(self.host_rows, len(detector))
        #: the device hook that navigates and computes, and its arrays
        self.kernels, self.arrays = kernels, kernels.arrays
        up = self.arrays.upload
        self.rows = up(self.host_rows)
        self.uv = up(np.stack([measurements["local_u"], measurements["local_v"]], axis=1))
        self.var = up(measurement_variances(detector, measurements, errors))
        self.offsets, self.order = up(offsets), up(order)
        self.n_modules = len(detector)
        #: the current batch's ``_Constraint`` (None: every measurement competes)
        self.constraint: _Constraint | None = None


class _Constraint:
    """Per batch seed, the measurements it may use on the modules its list covers.

    Keys ``seed * n_modules + module`` and ``seed * n_measurements + measurement``, sorted, so
    that a combination is looked up with one binary search each; built on the host from the
    given lists, used where the kernels work.
    """

    def __init__(self, offsets: np.ndarray, indices: np.ndarray, batch: np.ndarray,
                 event: _Event) -> None:
        lengths = offsets[batch + 1] - offsets[batch]
        local = np.repeat(np.arange(len(batch), dtype=np.int64), lengths)
        first = np.repeat(offsets[batch] - (np.cumsum(lengths) - lengths), lengths)
        meas = indices[first + np.arange(len(local))]
        self.arrays = event.arrays
        self.n_modules, self.n_measurements = event.n_modules, len(event.host_rows)
        self.module_keys = self.arrays.upload(
            np.unique(local * event.n_modules + event.host_rows[meas]))
        self.meas_keys = self.arrays.upload(np.unique(local * self.n_measurements + meas))

    def allowed(self, seed: Array, module: Array, meas: Array) -> Array:
        """Mask of (batch seed, module row, measurement) combinations the constraint allows."""
        covered = _in_sorted(self.arrays, seed * self.n_modules + module, self.module_keys)
        return ~covered | _in_sorted(self.arrays, seed * self.n_measurements + meas,
                                     self.meas_keys)


def _in_sorted(arrays: ArrayOps, keys: Array, table: Array) -> Array:
    """Mask of ``keys`` present in the sorted array ``table``."""
    if len(table) == 0:
        return arrays.full((len(keys),), False, arrays.xp.bool)
    pos = arrays.xp.searchsorted(table, keys)
    pos = arrays.xp.where(pos < len(table) - 1, pos, len(table) - 1)
    return table[pos] == keys


class _Candidates:
    """Structure of arrays of live candidates (one row each)."""

    FIELDS = ("seed", "params", "cov", "row", "fparams", "fcov", "frow", "node", "n_meas",
              "n_holes", "n_skip", "chi2", "s_min", "layer", "target")
    seed: Array
    params: Array
    cov: Array
    row: Array
    fparams: Array
    fcov: Array
    frow: Array
    node: Array
    n_meas: Array
    n_holes: Array
    n_skip: Array
    chi2: Array
    s_min: Array
    layer: Array
    target: Array

    def __init__(self, **arrays: Array) -> None:
        self.__dict__.update(arrays)

    def __len__(self) -> int:
        return len(self.seed)

    def take(self, idx: Array) -> _Candidates:
        return _Candidates(**{f: getattr(self, f)[idx] for f in self.FIELDS})

    @staticmethod
    def concat(arrays: ArrayOps, parts: list[_Candidates]) -> _Candidates:
        return _Candidates(**{f: arrays.xp.concatenate([getattr(p, f) for p in parts])
                              for f in _Candidates.FIELDS})


class _Nodes:
    """Append-only tree of (parent node, measurement): measurement lists without copies."""

    def __init__(self, arrays: ArrayOps) -> None:
        self.arrays = arrays
        self.parents: list[Array] = []
        self.meas: list[Array] = []
        self.size = 0

    def add(self, parents: Array, meas: Array) -> Array:
        ids = self.size + self.arrays.arange(len(meas))
        self.parents.append(parents)
        self.meas.append(meas)
        self.size += len(meas)
        return ids

    def tree(self) -> tuple[Array, Array]:
        """Every node's parent and measurement."""
        if not self.parents:
            empty = self.arrays.full((0,), 0, self.arrays.xp.int64)
            return empty, empty
        return (self.arrays.xp.concatenate(self.parents),
                self.arrays.xp.concatenate(self.meas))


def check_seeds(seeds: Seeds, spacepoints: Spacepoints, n_measurements: int) -> np.ndarray:
    """Measurement indices (n_seeds, 3) of the seeds' space points; ``InputError`` if unusable.

    Space point indices must be valid rows, their positions finite, and their measurement
    indices valid rows of the measurement table.
    """
    sp = seeds["spacepoints"]
    n_sp = len(spacepoints)
    bad = (sp < 0) | (sp >= n_sp)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(f"seed space point index out of range [0, {n_sp})", row=row,
                         column="seeds.spacepoints")
    finite_sp = (np.isfinite(spacepoints["x"]) & np.isfinite(spacepoints["y"])
                 & np.isfinite(spacepoints["z"]))
    finite = finite_sp[sp].all(axis=1)  # per space point first: seeds share them
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(f"seed space points with non-finite positions "
                         f"({int((~finite).sum())} seeds affected)", row=row,
                         column="seeds.spacepoints")
    meas = spacepoints["measurement_index"][sp]
    bad = (meas < 0) | (meas >= n_measurements)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(f"seed space point has measurement index outside [0, "
                         f"{n_measurements})", row=row, column="spacepoints.measurement_index")
    return meas


def find_tracks(detector: Detector, navigation: Navigation, measurements: Measurements,
                spacepoints: Spacepoints, seeds: Seeds, config: CkfConfig | None = None, *,
                starts: SeedStarts | None = None,
                seed_measurements: tuple[np.ndarray, np.ndarray] | None = None,
                kernels: CkfKernels = NUMBA_KERNELS) -> tuple[Tracks, CkfStats]:
    """Run the CKF on one event; returns the track candidates and counters.

    ``starts``: per seed, start parameters to use instead of the helix estimate through its
    space points; ``seed_measurements``: per seed, a CSR list ``(offsets, indices)`` of the
    measurements it may use on the modules the list covers (module docstring, step 4);
    ``kernels``: the device that navigates and computes, and where the candidates live
    (step 6).
    """
    config = config or CkfConfig()
    check_measurements(measurements)
    seed_meas = check_seeds(seeds, spacepoints, len(measurements))
    check_seed_inputs(len(seeds), len(measurements), starts, seed_measurements)
    stats = CkfStats(seeds=len(seeds))
    if len(seeds) == 0 or len(measurements) == 0:
        return Tracks.empty(), stats
    event = _Event(detector, measurements, config.measurement_errors, kernels)
    arrays, xp = event.arrays, event.arrays.xp
    given = None if starts is None else _GivenStarts(starts, detector, arrays)
    xyz_sp = np.stack([spacepoints["x"], spacepoints["y"], spacepoints["z"]], axis=1)
    seed_xyz = xyz_sp[seeds["spacepoints"]]
    order = np.argsort(-seeds["quality"].astype(np.float64), kind="stable")
    used = np.zeros(len(measurements), bool)
    nodes = _Nodes(arrays)
    finished: list[_Candidates] = []
    pending = order
    while len(pending):
        if config.deduplicate_seeds:
            pending = pending[used[seed_meas[pending]].sum(axis=1) < config.dedup_used]
        chosen = _select_batch(seed_meas[pending], len(measurements), config.seed_batch_size,
                               config.defer_shared)
        batch, pending = pending[chosen], pending[~chosen]
        if len(batch) == 0:
            continue
        batch_seeds = _SeedBatch(seed_meas[batch], seed_xyz[batch], event, navigation)
        if seed_measurements is not None:
            event.constraint = _Constraint(*seed_measurements, batch, event)
        back_nodes = _Nodes(arrays)
        inward = _fit_seeds(detector, event, back_nodes, batch_seeds, config,
                            None if given is None else given.of(batch))
        live = _outward_start(arrays, inward)
        n = len(batch)
        first_parent = arrays.full((n,), -1, xp.int64)
        n_inner, chi2_inner = arrays.full((n,), 0, xp.int64), arrays.full((n,), 0.0, xp.float64)
        if config.two_way:
            first_parent, n_inner, chi2_inner = _inward(
                detector, navigation, event, nodes, back_nodes, inward, n, config, stats)
        live.node = nodes.add(first_parent[live.seed], batch_seeds.meas[live.seed, 0])
        live.n_meas += n_inner[live.seed]
        live.chi2 += chi2_inner[live.seed]
        stats.seeds_processed += len(live)
        done = _run_batch(detector, navigation, event, nodes, live, config, stats,
                          seeds=batch_seeds)
        good = arrays.flatnonzero(done.n_meas >= config.min_measurements)
        if len(good):
            parents, meas = nodes.tree()
            used[arrays.download(_walk(arrays, parents, meas, done.node[good],
                                       done.n_meas[good]))] = True
        finished.append(done)
    return _to_tracks(detector, arrays, nodes, finished, config, stats), stats


def check_seed_inputs(n_seeds: int, n_measurements: int, starts: SeedStarts | None,
                       seed_measurements: tuple[np.ndarray, np.ndarray] | None) -> None:
    """``InputError`` unless ``starts`` and ``seed_measurements`` have one entry per seed."""
    if starts is not None:
        shapes = (starts.module_key.shape, starts.params.shape, starts.covariance.shape)
        if shapes != ((n_seeds,), (n_seeds, 6), (n_seeds, 6, 6)):
            raise InputError(f"starts: need ({n_seeds},), ({n_seeds}, 6), ({n_seeds}, 6, 6) "
                             f"module keys, parameters, covariances; got {shapes}",
                             column="starts")
    if seed_measurements is not None:
        offsets, indices = seed_measurements
        if (len(offsets) != n_seeds + 1 or offsets[0] != 0 or offsets[-1] != len(indices)
                or np.any(np.diff(offsets) < 0)):
            raise InputError(f"seed_measurements: offsets must rise from 0 to len(indices) "
                             f"in {n_seeds + 1} entries", column="seed_measurements.offsets")
        if len(indices) and (indices.min() < 0 or indices.max() >= n_measurements):
            raise InputError(f"seed_measurements: index outside [0, {n_measurements})",
                             column="seed_measurements.indices")


@numba.njit(cache=True)
def _select_batch(seed_meas: np.ndarray, n_measurements: int, batch_size: int,
                  defer_shared: int) -> np.ndarray:
    """Mask of the next batch: up to ``batch_size`` seeds in order, deferring conflicts.

    A seed sharing ``defer_shared`` or more measurements with a better seed already in the
    batch most likely belongs to the same particle: it waits for a later batch, by when the
    better seed's track has been found and deduplication can skip it. This recovers most of
    ACTS' one-seed-at-a-time deduplication while keeping batches large. The first remaining
    seed is always taken, so every call makes progress.
    """
    chosen = np.zeros(len(seed_meas), np.bool_)
    claimed = np.zeros(n_measurements, np.bool_)
    taken = 0
    for i in range(len(seed_meas)):
        if taken >= batch_size:
            break
        shared = 0
        for k in range(3):
            if claimed[seed_meas[i, k]]:
                shared += 1
        if defer_shared > 0 and shared >= defer_shared:
            continue
        chosen[i] = True
        taken += 1
        for k in range(3):
            claimed[seed_meas[i, k]] = True
    return chosen


class _GivenStarts:
    """``find_tracks``' given starts where the kernels work: moved there once per event (a
    device stage's outputs are there already), a batch's picked there."""

    def __init__(self, starts: SeedStarts, detector: Detector, arrays: ArrayOps) -> None:
        self.arrays = arrays
        self.params, self.cov = arrays.here(starts.params), arrays.here(starts.covariance)
        self.rows = arrays.upload(detector.index_of(starts.module_key,
                                                    column="starts.module_key"))

    def of(self, batch: np.ndarray) -> tuple[Array, Array, Array]:
        """Parameters, covariances and module rows of seeds ``batch``."""
        here = self.arrays.upload(batch)
        return self.params[here], self.cov[here], self.rows[here]


class _SeedBatch:
    """The seeds of one batch: measurements, space points, and where those lie; on the host
    (``host_*``, for the seed estimate) and where the kernels work."""

    def __init__(self, meas: np.ndarray, xyz: np.ndarray, event: _Event,
                 navigation: Navigation) -> None:
        #: (n, 3) measurement indices, (n, 3, 3) positions, (n, 3) module rows
        self.host_meas, self.host_xyz = meas.astype(np.int64), xyz
        self.host_rows = event.host_rows[meas]
        self.meas, self.xyz = event.arrays.upload(self.host_meas), event.arrays.upload(xyz)
        self.rows = event.rows[self.meas]
        self.layers = event.kernels.layer_of(navigation, self.rows)  #: (n, 3) layer indices


def _inward(detector: Detector, navigation: Navigation, event: _Event, nodes: _Nodes,
            back_nodes: _Nodes, live: _Candidates, n: int, config: CkfConfig,
            stats: CkfStats) -> tuple[Array, Array, Array]:
    """Measurements inside the seeds' bottom space points (ACTS ``twoWay`` finding).

    ``live`` are the seeds filtered top -> middle -> bottom (``_fit_seeds`` on the reversed
    space points: the same helix run backwards, opposite direction and charge), their nodes in
    ``back_nodes``; the CKF steps them on inwards until the point of closest approach to the
    beam line. The best branch per seed (most measurements, then lowest chi2) gives the inner
    measurements, which are put in front of the seed's measurements in ``nodes``. Returns per
    seed (``n`` of the batch) the node to chain the seed's bottom measurement to (-1: none),
    the number of inner measurements and their chi2 increments.
    """
    arrays, xp = event.arrays, event.arrays.xp
    tip = arrays.full((n,), -1, xp.int64)
    n_inner, chi2_inner = arrays.full((n,), 0, xp.int64), arrays.full((n,), 0.0, xp.float64)
    if len(live) == 0:
        return tip, n_inner, chi2_inner
    seed_chi2 = arrays.full((n,), 0.0, xp.float64)
    seed_chi2[live.seed] = live.chi2
    done = _run_batch(detector, navigation, event, back_nodes, live, config, stats,
                      backward=True)
    done = done.take(arrays.flatnonzero(done.n_meas > 3))
    if len(done) == 0:
        return tip, n_inner, chi2_inner
    order = arrays.lexsort((done.chi2, -done.n_meas, done.seed))
    best = done.take(order[arrays.run_starts(done.seed[order])])
    parents, node_meas = back_nodes.tree()
    lists = _walk(arrays, parents, node_meas, best.node, best.n_meas)
    ends = xp.cumsum(best.n_meas, axis=0)
    k = best.n_meas - 3
    n_inner[best.seed] = k
    chi2_inner[best.seed] = best.chi2 - seed_chi2[best.seed]
    # chain innermost first: depth d holds the d-th measurement counted from the inside
    for d in range(int(k.max())):
        has = arrays.flatnonzero(k > d)
        inner_meas = lists[ends[has] - 1 - d]
        tip[best.seed[has]] = nodes.add(tip[best.seed[has]], inner_meas)
    return tip, n_inner, chi2_inner


#: The seed's space points top -> middle -> bottom.
_TOP_DOWN = [2, 1, 0]


def _fit_seeds(detector: Detector, event: _Event, nodes: _Nodes, seeds: _SeedBatch,
               config: CkfConfig,
               start: tuple[Array, Array, Array] | None = None) -> _Candidates:
    """Estimate + Kalman filter through the three seed measurements, top -> middle -> bottom.

    The result is the seed's best state on the bottom module, moving inwards, which both the
    inward search and, turned round, the outward search start from. ``start``: (parameters,
    covariance, module rows) moving outwards, used instead of the estimate: propagated to the
    top module and turned round. The estimate is computed on the host, where the seeds are;
    a given start's transport and the filter run where the kernels work.
    """
    arrays, xp, kernels = event.arrays, event.arrays.xp, event.kernels
    top = seeds.host_rows[:, 2]
    center, rotation = detector.center, detector.rotation
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if start is None:
            params, cov = estimate_parameters(seeds.host_xyz[:, _TOP_DOWN], center[top],
                                              rotation[top], config.bz)
            ok = np.all(np.isfinite(params), axis=1)
            params, cov, ok = arrays.upload(params), arrays.upload(cov), arrays.upload(ok)
        else:  # given where the kernels work (find_tracks put them there)
            params, cov, src = start
            params, cov, ok = kernels.transport(detector, params, cov, src,
                                                seeds.rows[:, 2], config)
            params, cov = _reverse(arrays, params, cov)
            ok &= xp.isfinite(params).all(axis=1)
        meas, rows = seeds.meas[:, _TOP_DOWN], seeds.rows[:, _TOP_DOWN]
        n = len(meas)
        chi2 = arrays.full((n,), 0.0, xp.float64)
        node = arrays.full((n,), -1, xp.int64)
        for k in range(3):
            if k:
                pred = kernels.predict(detector, params, cov, rows[:, k - 1], arrays.arange(n),
                                       rows[:, k], config, passive=True)
                ok &= pred.ok
                params, cov = pred.params, pred.cov
            params, cov, dchi2 = kernels.update(params, cov, event.uv[meas[:, k]],
                                                event.var[meas[:, k]])
            chi2 += dchi2
            node = nodes.add(node, meas[:, k])
        ok &= _valid(xp, params, cov)
    live = _Candidates(seed=arrays.arange(n), params=params, cov=cov, row=rows[:, 2],
                       fparams=params, fcov=cov, frow=rows[:, 2], node=node,
                       n_meas=arrays.full((n,), 3, xp.int64),
                       n_holes=arrays.full((n,), 0, xp.int64),
                       n_skip=arrays.full((n,), 0, xp.int64), chi2=chi2,
                       s_min=arrays.full((n,), 0.0, xp.float64),
                       layer=arrays.full((n,), -1, xp.int64),
                       target=arrays.full((n,), 3, xp.int64))
    return live.take(arrays.flatnonzero(ok))


#: mm: a layer crossed at least this much before the next seed space point is searched first
_SEED_LAYER_GAP = 1.0


def _reverse(arrays: ArrayOps, params: Array, cov: Array) -> tuple[Array, Array]:
    """The same states moving the other way: (phi + pi, pi - theta, -q/p); the covariance by
    the Jacobian of that turn, diag(1, 1, 1, -1, -1, 1)."""
    xp = arrays.xp
    slot = arrays.arange(6)
    turned = (slot == THETA) | (slot == QOP)
    out = xp.where(turned, -params, params)
    out[:, PHI] = xp.where(out[:, PHI] > 0, out[:, PHI] - math.pi, out[:, PHI] + math.pi)
    out[:, THETA] += math.pi
    return out, xp.where(turned[:, None] ^ turned[None, :], -cov, cov)


def _outward_start(arrays: ArrayOps, inward: _Candidates) -> _Candidates:
    """Outward candidates on the bottom modules from the seeds' inward (reversed) fits.

    The reversed fit's state already holds all three seed measurements, so the outward search
    starts precise at the bottom space point and walks every layer from there: layers between
    the seed's space points (seeds may skip one) are searched too, and the middle and top
    measurements are picked up on the way (``_to_seed_hits``) without a second update, which
    would count them twice. ``node`` is left to the caller (it chains to the inward hits).
    """
    out = inward.take(arrays.arange(len(inward)))
    params, cov = _reverse(arrays, out.params, out.cov)
    out.params = out.fparams = params
    out.cov = out.fcov = cov
    out.n_meas = arrays.full((len(out),), 1, arrays.xp.int64)
    out.target = arrays.full((len(out),), 1, arrays.xp.int64)
    return out


def _split_seed_hits(detector: Detector, event: _Event, nodes: _Nodes, live: _Candidates,
                     free: Array, layer: Array, s: Array, seeds: _SeedBatch, config: CkfConfig,
                     ) -> tuple[list[_Candidates], _Candidates, Array, Array, Array]:
    """Move the candidates whose next stop is their next seed space point onto it.

    That is the case where the next layer is the space point's own, where there is none, or
    where it lies (in path, against the straight distance to the space point) not clearly
    before the space point; otherwise the layer before it is searched like any other. Returns
    ``([moved], rest of live, free, layer, s)``.
    """
    arrays, xp = event.arrays, event.arrays.xp
    on = arrays.flatnonzero(live.target < 3)
    seed, target = live.seed[on], live.target[on]
    dist = xp.linalg.norm(seeds.xyz[seed, target] - free[on, :3], axis=1)
    go = on[(layer[on] < 0) | (layer[on] == seeds.layers[seed, target])
            | (s[on] > dist - _SEED_LAYER_GAP)]
    if len(go) == 0:
        return [], live, free, layer, s
    moved = _to_seed_hits(detector, event, nodes, live.take(go), seeds, config)
    rest = arrays.full((len(live),), True, xp.bool)
    rest[go] = False
    rest = arrays.flatnonzero(rest)
    return [moved], live.take(rest), free[rest], layer[rest], s[rest]


def _to_seed_hits(detector: Detector, event: _Event, nodes: _Nodes, cand: _Candidates,
                  seeds: _SeedBatch, config: CkfConfig) -> _Candidates:
    """Candidates moved onto their next seed space point's module, its measurement added.

    Their state already holds the seed measurements (``_outward_start``): the prediction is
    taken as is, without a Kalman update; a failed propagation drops the candidate.
    """
    arrays, xp = event.arrays, event.arrays.xp
    target = seeds.rows[cand.seed, cand.target]
    prop = event.kernels.predict(detector, cand.params, cand.cov, cand.row,
                                 arrays.arange(len(cand)), target, config, passive=False)
    cand.params, cand.cov = prop.params, 0.5 * (prop.cov + xp.swapaxes(prop.cov, 1, 2))
    cand.node = nodes.add(cand.node, seeds.meas[cand.seed, cand.target])
    cand.layer = seeds.layers[cand.seed, cand.target]
    cand.row = target
    cand.n_meas = cand.n_meas + 1
    cand.n_skip = arrays.full((len(cand),), 0, xp.int64)
    cand.target = cand.target + 1
    cand.s_min = arrays.full((len(cand),), 0.0, xp.float64)
    return cand.take(arrays.flatnonzero(prop.ok & _valid(xp, cand.params, cand.cov)))


def _valid(xp: ModuleType, params: Array, cov: Array) -> Array:
    theta = params[:, THETA]
    return (xp.isfinite(params).all(axis=1) & xp.isfinite(cov).all(axis=(1, 2))
            & (theta > 0) & (theta < math.pi) & (cov[:, 0, 0] > 0) & (cov[:, 1, 1] > 0))


def _scatter(detector: Detector, params: np.ndarray, cov: np.ndarray, rows: np.ndarray,
             config: CkfConfig) -> np.ndarray:
    """Covariance plus the material noise of crossing modules ``rows``.

    With a material table (``taas.tracking.material.material_model``) the module's slab gives
    scattering and straggling; the search leaves the mean energy loss to the final fit (it
    runs both inwards and outwards, and a few MeV do not move a prediction by its error).
    """
    if not config.multiple_scattering:
        return cov
    cos_inc = np.einsum("ni,ni->n", detector.rotation[rows, :, 2],
                        direction(params[:, PHI], params[:, THETA]))
    slabs = material_model(detector)[0]
    if slabs is not None:
        return cov + slab_noise(params, cos_inc, slabs[rows], config.mass)[0]
    return add_scattering(params, cov, cos_inc, detector.modules["thickness"][rows],
                          x0=config.x0, mass=config.mass)


def _passive_noise(detector: Detector, params: np.ndarray, src: np.ndarray, dst: np.ndarray,
                   path: np.ndarray, config: CkfConfig) -> np.ndarray | float:
    """Noise on modules ``dst`` of the passive surfaces crossed on the way from ``src``."""
    passive = material_model(detector)[1]
    if not config.multiple_scattering or passive is None or not len(passive) or not len(src):
        return 0.0
    center, rotation = detector.center, detector.rotation
    free = bound_to_free(params, center[src], rotation[src])
    bz = step_bz(field_of(detector, config.bz), center[src], center[dst], params[:, THETA])
    return passive.noise_at(free, np.where(np.isfinite(path), path, 0.0), center[dst],
                            rotation[dst], bz=bz, mass=config.mass)[0]


def _run_batch(detector: Detector, navigation: Navigation, event: _Event, nodes: _Nodes,
               live: _Candidates, config: CkfConfig, stats: CkfStats,
               backward: bool = False, seeds: _SeedBatch | None = None) -> _Candidates:
    """Step all candidates of a batch until every one has finished."""
    finished: list[_Candidates] = []
    # the layer each candidate sits on is excluded from the next-layer search
    live.layer = event.kernels.layer_of(navigation, live.row)
    step = 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        while len(live) and step < config.max_steps:
            live, done = _step(detector, navigation, event, nodes, live, config, stats,
                               backward, seeds)
            finished.append(done)
            step += 1
    finished.append(live)
    stats.steps.append(step)
    return _Candidates.concat(event.arrays, finished)


def _step(detector: Detector, navigation: Navigation, event: _Event, nodes: _Nodes,
          live: _Candidates, config: CkfConfig, stats: CkfStats,
          backward: bool = False, seeds: _SeedBatch | None = None,
          ) -> tuple[_Candidates, _Candidates]:
    """Advance every live candidate by one layer; returns (still live, finished).

    ``backward``: candidates run inwards and stop at the transverse point of closest approach
    to the beam line (straight-line estimate), not at the far side of the detector.
    ``seeds``: candidates still short of their seed's top space point (``target < 3``) move
    onto the next seed space point unless the next layer lies before it, in which case that
    layer is searched like any other.
    """
    arrays, xp, kernels = event.arrays, event.arrays.xp, event.kernels
    free = kernels.free_states(detector, live.params, live.row)
    s_max: float | Array = math.inf
    if backward:
        tt2 = xp.clip(free[:, 4] ** 2 + free[:, 5] ** 2, 1e-24, None)
        s_max = xp.clip(-(free[:, 0] * free[:, 4] + free[:, 1] * free[:, 5]) / tt2, 0.0, None)
    layer, s = kernels.next_layer(navigation, free, live.s_min, live.layer,
                                  kernels.point_field(detector, config, free), s_max)
    forced: list[_Candidates] = []
    if seeds is not None:
        forced, live, free, layer, s = _split_seed_hits(detector, event, nodes, live, free,
                                                        layer, s, seeds, config)
    out = layer < 0
    moving = arrays.flatnonzero(~out)
    finished = [live.take(arrays.flatnonzero(out))]
    if len(moving) == 0:
        return _Candidates.concat(arrays, [live.take(moving), *forced]), finished[0]
    cand = live.take(moving)
    layer, s, free = layer[moving], s[moving], free[moving]
    # the field where each moving candidate is (the seed split above may have dropped rows)
    at = kernels.helix_at(free, s, kernels.point_field(detector, config, free), config.mass)
    pair_c, modules = kernels.crossable_modules(detector, navigation, layer, at, config)
    pair_c, modules, path, pred, pred_cov = _cross(detector, cand, pair_c, modules, config,
                                                   stats, kernels)

    # gaps: no module crossed on this layer -> try the next layer from the same state
    crossed, gap = _gaps(arrays, cand, pair_c, layer, s)

    # measurements on crossed modules: (pair, measurement) combinations, chi2, best per cand.
    combo_p, combo_m = _combinations(event, modules, cand.seed[pair_c])
    chi2 = kernels.chi2(pred[combo_p], pred_cov[combo_p], event.uv[combo_m],
                        event.var[combo_m])
    ok = chi2 < config.chi2_cut
    combo_p, combo_m, chi2 = combo_p[ok], combo_m[ok], chi2[ok]
    combo_c = pair_c[combo_p]
    best = _best_per_group(arrays, combo_c, chi2, config.max_branches_per_surface)
    combo_p, combo_m, combo_c = combo_p[best], combo_m[best], combo_c[best]

    new_params, new_cov, dchi2 = kernels.update(pred[combo_p], pred_cov[combo_p],
                                                event.uv[combo_m], event.var[combo_m])
    parent = cand.take(combo_c)
    node = nodes.add(parent.node, combo_m)
    stats.branches += len(combo_m)
    rows = modules[combo_p]
    n_branches = len(rows)
    branch = _Candidates(seed=parent.seed, params=new_params, cov=new_cov, row=rows,
                         fparams=new_params, fcov=new_cov, frow=rows, node=node,
                         n_meas=parent.n_meas + 1, n_holes=parent.n_holes,
                         n_skip=arrays.full((n_branches,), 0, xp.int64),
                         chi2=parent.chi2 + dchi2,
                         s_min=arrays.full((n_branches,), 0.0, xp.float64),
                         layer=layer[combo_c], target=parent.target)
    if config.overlaps:
        nxt_pair = _overlap_pair(arrays, combo_p, pair_c, modules, path)
        with_overlap = arrays.flatnonzero(nxt_pair >= 0)
        if len(with_overlap):
            _overlap_update(detector, event, nodes, branch, with_overlap,
                            modules[nxt_pair[with_overlap]], config, stats)
    branch = branch.take(arrays.flatnonzero(_valid(xp, branch.params, branch.cov)))

    # holes: crossed a module, no compatible measurement -> go on with the prediction
    has_meas = arrays.full((len(cand),), False, xp.bool)
    has_meas[combo_c] = True
    hole_c = arrays.flatnonzero(crossed & ~has_meas)
    hole = _holes(arrays, cand.take(hole_c), xp.searchsorted(pair_c, hole_c), layer[hole_c],
                  modules, pred, pred_cov)
    hole, branch, stopped = _limits(arrays, hole, branch, config)
    finished.append(stopped)

    nxt = _Candidates.concat(arrays, [branch, hole, gap, *forced])
    nxt = nxt.take(_cap_per_seed(arrays, nxt, config.max_branches_per_seed))
    return nxt, _Candidates.concat(arrays, finished)


def _cross(detector: Detector, cand: _Candidates, pair_c: Array, modules: Array,
           config: CkfConfig, stats: CkfStats, kernels: CkfKernels = NUMBA_KERNELS,
           ) -> tuple[Array, Array, Array, Array, Array]:
    """Predictions on the modules each candidate actually crosses, of the crossable
    (candidate ``pair_c``, module) pairs (``CkfKernels.crossable_modules``).

    The pairs are propagated with the transport Jacobian and ``C' = J (C + Q) J^T`` (+ the
    passive surfaces' noise) by the ``kernels`` in one pass (99.5% of them cross inside the
    module at ``medium``: a pass without the Jacobian first would solve the same
    intersections twice), and the pairs whose crossing lies inside the module are kept.
    Returns per crossing pair: candidate, module row, path, params, covariance (pairs stay
    ordered by candidate).
    """
    pred = kernels.predict(detector, cand.params, cand.cov, cand.row, pair_c, modules, config,
                           passive=True)
    inside = pred.ok & (pred.path > 0) & kernels.inside_bounds(
        detector, modules, pred.params[:, 0], pred.params[:, 1], config.bounds_tolerance)
    stats.pairs += len(inside)
    keep = kernels.arrays.flatnonzero(inside)
    pred_cov = pred.cov[keep]
    return (pair_c[keep], modules[keep], pred.path[keep], pred.params[keep],
            0.5 * (pred_cov + kernels.arrays.xp.swapaxes(pred_cov, 1, 2)))


def line_misses(detector: Detector, at: np.ndarray, pair_c: np.ndarray, modules: np.ndarray,
                config: CkfConfig) -> np.ndarray:
    """Pairs whose module the helix cannot cross within the bounds tolerance: the straight line
    along the state ``at[pair_c]`` meets the module's plane outside its bounds by more than the
    helix can stray from that line (``formulas.line_crossing``). The exact test follows for
    the other pairs, so this only saves their Newton solves (about four in five)."""
    u, v, margin, steep = _line_crossings(np.ascontiguousarray(at), pair_c, modules,
                                          detector.center, detector.rotation,
                                          -helix.K_FIELD * field_of(detector, config.bz).max_bz)
    return steep & ~detector.inside_bounds(modules, u, v, config.bounds_tolerance + margin)


@numba.njit(cache=True)
def _line_crossings(at: np.ndarray, pair_c: np.ndarray, modules: np.ndarray,
                    center: np.ndarray, rotation: np.ndarray, h_per_qop: float,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``formulas.line_crossing`` of every (candidate ``pair_c``, module) pair."""
    n = len(pair_c)
    u, v, margin = np.empty(n), np.empty(n), np.empty(n)
    steep = np.empty(n, np.bool_)
    for k in range(n):
        c, m = pair_c[k], modules[k]
        u[k], v[k], margin[k], steep[k] = _formulas.line_crossing(
            at[c, 0], at[c, 1], at[c, 2], at[c, 4], at[c, 5], at[c, 6], at[c, 7], center[m],
            rotation[m], h_per_qop)
    return u, v, margin, steep


def _gaps(arrays: ArrayOps, cand: _Candidates, pair_c: Array, layer: Array,
          s: Array) -> tuple[Array, _Candidates]:
    """Mask of candidates crossing a module of ``layer``; the others, set to look beyond it."""
    crossed = arrays.full((len(cand),), False, arrays.xp.bool)
    crossed[pair_c] = True
    gap = cand.take(arrays.flatnonzero(~crossed))
    gap.s_min = s[~crossed] + 1e-3
    gap.layer = layer[~crossed]
    return crossed, gap


def _limits(arrays: ArrayOps, hole: _Candidates, branch: _Candidates, config: CkfConfig,
            ) -> tuple[_Candidates, _Candidates, _Candidates]:
    """(holes, branches, stopped): candidates past ``max_holes`` (in total) or
    ``max_consecutive_holes``, and branches with ``max_measurements``, stop."""
    too_many = hole.n_holes > config.max_holes
    if config.max_consecutive_holes is not None:
        too_many |= hole.n_skip > config.max_consecutive_holes
    full = (branch.n_meas >= config.max_measurements if config.max_measurements is not None
            else arrays.full((len(branch),), False, arrays.xp.bool))
    stopped = _Candidates.concat(arrays, [hole.take(arrays.flatnonzero(too_many)),
                                          branch.take(arrays.flatnonzero(full))])
    return (hole.take(arrays.flatnonzero(~too_many)), branch.take(arrays.flatnonzero(~full)),
            stopped)


def _holes(arrays: ArrayOps, hole: _Candidates, pair: Array, layer: Array, modules: Array,
           pred: Array, pred_cov: Array) -> _Candidates:
    """Candidates that go on with the prediction on crossing pair ``pair``, one hole more."""
    hole.params, hole.cov = pred[pair], pred_cov[pair]
    hole.row, hole.layer = modules[pair], layer
    hole.s_min = arrays.full((len(pair),), 0.0, arrays.xp.float64)
    hole.n_holes = hole.n_holes + 1
    hole.n_skip = hole.n_skip + 1
    return hole


def _combinations(event: _Event, modules: Array, seeds: Array) -> tuple[Array, Array]:
    """Every (position in ``modules``, measurement on that module) combination that the
    batch's constraint allows the seed ``seeds[position]``."""
    combo_p, k = event.arrays.entries(event.offsets[modules + 1] - event.offsets[modules])
    combo_m = event.order[event.offsets[modules][combo_p] + k]
    if event.constraint is None:
        return combo_p, combo_m
    ok = event.constraint.allowed(seeds[combo_p], modules[combo_p], combo_m)
    return combo_p[ok], combo_m[ok]


def _overlap_pair(arrays: ArrayOps, chosen: Array, pair_c: Array, modules: Array,
                  path: Array) -> Array:
    """Per chosen pair, the nearest other crossed module of its candidate further along (-1):
    each chosen pair against every pair of its candidate at once (``pair_c`` is sorted, so a
    candidate's pairs are contiguous); the nearest by path, the first of equals."""
    xp = arrays.xp
    out = arrays.full((len(chosen),), -1, xp.int64)
    if len(chosen) == 0:
        return out
    cand = pair_c[chosen]
    first = xp.searchsorted(pair_c, cand)
    owner, k = arrays.entries(xp.searchsorted(pair_c, cand, side="right") - first)
    other = first[owner] + k
    mine = chosen[owner]
    ahead = (modules[other] != modules[mine]) & (path[other] > path[mine])
    owner, other = owner[ahead], other[ahead]
    order = arrays.lexsort((other, path[other], owner))
    owner, other = owner[order], other[order]
    nearest = xp.concatenate([arrays.full((min(len(owner), 1),), True, xp.bool),
                              owner[1:] != owner[:-1]])
    out[owner[nearest]] = other[nearest]
    return out


def _overlap_update(detector: Detector, event: _Event, nodes: _Nodes, branch: _Candidates,
                    sel: Array, target: Array, config: CkfConfig, stats: CkfStats) -> None:
    """Add a second measurement on the same layer where the track crosses a module overlap.

    ACTS navigates module by module, so a track crossing two overlapping modules of one layer
    collects both hits; this step does the same for branches whose crossing list holds another
    module further along: propagate there, take the best compatible measurement (no extra
    branching, no hole when there is none) and update ``branch`` in place.
    """
    arrays, kernels = event.arrays, event.kernels
    prop = kernels.predict(detector, branch.params[sel], branch.cov[sel], branch.row[sel],
                           arrays.arange(len(sel)), target, config, passive=False)
    pred_cov = prop.cov
    combo_p, combo_m = _combinations(event, target, branch.seed[sel])
    chi2 = kernels.chi2(prop.params[combo_p], pred_cov[combo_p], event.uv[combo_m],
                        event.var[combo_m])
    ok = (chi2 < config.chi2_cut) & prop.ok[combo_p]
    combo_p, combo_m, chi2 = combo_p[ok], combo_m[ok], chi2[ok]
    best = _best_per_group(arrays, combo_p, chi2, 1)
    combo_p, combo_m = combo_p[best], combo_m[best]
    new_params, new_cov, dchi2 = kernels.update(prop.params[combo_p], pred_cov[combo_p],
                                                event.uv[combo_m], event.var[combo_m])
    good = _valid(arrays.xp, new_params, new_cov)
    combo_p, combo_m = combo_p[good], combo_m[good]
    rows = sel[combo_p]
    stats.branches += len(rows)
    branch.node[rows] = nodes.add(branch.node[rows], combo_m)
    branch.params[rows], branch.cov[rows] = new_params[good], new_cov[good]
    branch.fparams[rows], branch.fcov[rows] = new_params[good], new_cov[good]
    branch.row[rows] = branch.frow[rows] = target[combo_p]
    branch.n_meas[rows] += 1
    branch.chi2[rows] += dchi2[good]


def _chi2(params: np.ndarray, cov: np.ndarray, meas: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Predicted chi2 of 2D measurements (``kalman.predicted_chi2`` without the 6x6 copies)."""
    r0, r1 = meas[:, 0] - params[:, 0], meas[:, 1] - params[:, 1]
    s00, s11, s01 = cov[:, 0, 0] + var[:, 0], cov[:, 1, 1] + var[:, 1], cov[:, 0, 1]
    det = s00 * s11 - s01 * s01
    return (r0 * r0 * s11 - 2 * r0 * r1 * s01 + r1 * r1 * s00) / det


def _best_per_group(arrays: ArrayOps, group: Array, score: Array, k: int) -> Array:
    """Indices of the ``k`` lowest scores of each group."""
    xp = arrays.xp
    order = arrays.lexsort((score, group))
    g = group[order]
    new = xp.concatenate([arrays.full((min(len(g), 1),), True, xp.bool), g[1:] != g[:-1]])
    starts = arrays.flatnonzero(new)
    rank = arrays.arange(len(g)) - starts[xp.cumsum(new, axis=0) - 1]
    return order[rank < k]


def _cap_per_seed(arrays: ArrayOps, cands: _Candidates, k: int) -> Array:
    """Rows to keep: the ``k`` candidates of each seed with the lowest chi2/ndf, in order."""
    ndf = 2 * cands.n_meas - 5
    keep = _best_per_group(arrays, cands.seed, cands.chi2 / arrays.xp.where(ndf > 1, ndf, 1), k)
    return keep[arrays.stable_argsort(keep)]


def _walk(arrays: ArrayOps, parents: Array, meas: Array, tips: Array, lengths: Array) -> Array:
    """Measurement lists (concatenated, in order along each track) from the tip nodes: one
    step up the tree per depth, for every list at once."""
    xp = arrays.xp
    ends = xp.cumsum(lengths, axis=0)
    out = arrays.full((int(ends[-1]) if len(ends) else 0,), 0, xp.int64)
    lists, node = arrays.arange(len(tips)), tips
    for depth in range(int(lengths.max()) if len(lengths) else 0):
        deep = lengths[lists] > depth
        lists, node = lists[deep], node[deep]
        out[ends[lists] - 1 - depth] = meas[node]
        node = parents[node]
    return out


def _to_tracks(detector: Detector, arrays: ArrayOps, nodes: _Nodes,
               finished: list[_Candidates], config: CkfConfig, stats: CkfStats) -> Tracks:
    """The finished candidates with enough measurements as host ``Tracks``."""
    if not finished:
        return Tracks.empty()
    done = _Candidates.concat(arrays, finished)
    stats.candidates += len(done)
    done = done.take(arrays.flatnonzero(done.n_meas >= config.min_measurements))
    stats.tracks = len(done)
    if len(done) == 0:
        return Tracks.empty()
    parents, meas = nodes.tree()
    down = arrays.download
    n_meas = down(done.n_meas)
    offsets = np.zeros(len(n_meas) + 1, np.int64)
    np.cumsum(n_meas, out=offsets[1:])
    return Tracks(module_key=detector.modules["module_key"][down(done.frow)],
                  params=down(done.fparams), covariance=down(done.fcov), chi2=down(done.chi2),
                  ndf=2 * n_meas - 5, meas_offsets=offsets,
                  meas_indices=down(_walk(arrays, parents, meas, done.node, done.n_meas)))
