"""The bridge's stages: ``prototrack_seeding`` (proto-tracks -> seeds with start parameters)
and ``prototrack_ckf`` (the CKF run from them, traccc's finding configuration).

Two stages rather than one so that the bridge and the CKF are timed apart and either can move
to another device on its own. The CKF stage is not the ``cpu`` pipeline's ``ckf``: it takes
the bridge's start parameters and, in ``constrained`` mode, each seed's proto-track, which
triplet seeding has no use for. Backends set ``BACKEND`` (the array work is the same code).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.table import Table, col
from taas.edm.tracks import ProtoTracks, Seeds, Tracks, take_lists
from taas.stages.base import RowOrder, Stage
from taas.tracking.arrays import HOST, Array, ArrayOps
from taas.tracking.ckf import (
    NUMBA_KERNELS,
    CkfKernels,
    CkfStats,
    SeedStarts,
    check_seed_inputs,
    find_tracks,
)
from taas.tracking.navigation import build_navigation
from traccc_bridge.bridge import (
    BridgeOutput,
    all_supplementary_seeds,
    passes_momentum_cuts,
    seed_prototracks,
)
from traccc_bridge.config import TracccFindingConfig, TracccSeedingConfig

#: Per seed, its proto-track's measurements (CSR), as ``ProtoTracks`` columns.
SEED_MEASUREMENTS = "seed_measurements"


class SeedStartTable(Table):
    """Per seed: bound start parameters and covariance on a module, moving outwards."""

    NAME = "seed_starts"
    SPECS = (
        col("module_key", "u8", "surface of the parameters"),
        col("params", "f8", "loc0, loc1, phi, theta, q/p, t", shape=(-1, 6)),
        col("covariance", "f8", "6x6 bound covariance", shape=(-1, 6, 6)),
    )

    @classmethod
    def of(cls, starts: SeedStarts) -> SeedStartTable:
        return cls(module_key=starts.module_key, params=starts.params,
                   covariance=starts.covariance)


class SurfaceOrder(Table):
    """Measurements sorted by surface (traccc's layout), CSR over surfaces: ``surfaces``
    (module keys ascending), ``offsets`` and ``indices`` (surface i's measurement rows are
    ``indices[offsets[i]:offsets[i + 1]]``; ``indices`` is the sorting permutation)."""

    NAME = "surface_order"
    SPECS = (
        col("surfaces", "u8", "distinct module keys, ascending"),
        col("offsets", "i8", "n_surfaces + 1 entries"),
        col("indices", "i8", "measurement rows sorted by surface"),
    )
    ROW_GROUPS = (("surfaces",), ("offsets",), ("indices",))


class PrototrackSeedingStage(Stage):
    """Measurements + space points + proto-tracks -> seeds, start parameters, each seed's
    measurements and the surface order (``traccc_bridge.bridge.seed_prototracks``).

    Default method ``triplet``, measured (``benchmarks/results/acorn_traccc.json``) on two
    ``medium`` events (4000 particles, 48.6k measurements each): two_way efficiency
    (pT > 1 GeV) 0.9993 (``free`` CKF) and 0.9988 (``constrained``), no fakes, in 0.126 s of
    bridge per event, against 0.9989 and 0.9984 in 0.414 s when each proto-track's Kalman
    fit starts the CKF; on a ``large`` event (16000 particles, 194k measurements) 0.9927 /
    0.07% fakes against 0.9857 / 0.13% (``free``). A fit pulled by the wrong hits a GNN
    proto-track carries starts the CKF worse than a clean triplet does, and costs more.

    ``arrays`` is the device hook (``taas.tracking.arrays.ArrayOps``): numpy on the host here,
    torch in the gpu backend.
    """

    NAME = "prototrack_seeding"
    INPUTS = (*Measurements.tensor_specs(), *Spacepoints.tensor_specs(),
              *ProtoTracks.tensor_specs())
    ROW_ORDER = RowOrder(("measurements",),
                         index_inputs=("spacepoints.measurement_index", "prototracks.indices"),
                         index_outputs=(f"{SEED_MEASUREMENTS}.indices", "surface_order.indices"))
    OUTPUTS = (*Seeds.tensor_specs(), *SeedStartTable.tensor_specs(),
               *ProtoTracks.tensor_specs(SEED_MEASUREMENTS), *SurfaceOrder.tensor_specs())

    def __init__(self, detector: Detector, config: TracccSeedingConfig | None = None) -> None:
        super().__init__(detector)
        self.config = config or TracccSeedingConfig()
        self.arrays: ArrayOps = HOST

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.bridge(inputs)
        starts = out.starts._replace(params=self.arrays.download(out.starts.params),
                                     covariance=self.arrays.download(out.starts.covariance))
        return {**self.host_tables(out), **self.surface_order(out, on_host=True),
                **SeedStartTable.of(starts).to_tensors()}

    def bridge(self, inputs: Mapping[str, np.ndarray]) -> BridgeOutput:
        """``seed_prototracks`` on the stage's inputs (host arrays)."""
        return seed_prototracks(self.detector, Measurements.from_tensors(inputs),
                                Spacepoints.from_tensors(inputs),
                                ProtoTracks.from_tensors(inputs), self.config, self.arrays,
                                supplementary=self.supplementary_done(inputs))

    def supplementary_done(self, inputs: Mapping[str, np.ndarray]) -> Seeds | None:
        """The ``all`` supplementary seeds of ``inputs`` if computed already (None: the
        bridge computes them): never here (``EarlySupplementarySeeding``)."""
        return None

    @staticmethod
    def host_tables(out: BridgeOutput) -> dict[str, np.ndarray]:
        """The seeds, the starts' module keys and the seeds' measurement lists (on the host)."""
        seed_lists = ProtoTracks(offsets=out.seed_offsets, indices=out.seed_indices)
        return {**out.seeds.to_tensors(), f"{SeedStartTable.NAME}.module_key":
                out.starts.module_key, **seed_lists.to_tensors(SEED_MEASUREMENTS)}

    def surface_order(self, out: BridgeOutput, *, on_host: bool = False) -> dict[str, Array]:
        """The ``SurfaceOrder`` tensors: the surfaces' module keys on the host (looked up from
        their rows), its offsets and indices where the bridge's arrays work (``on_host``:
        brought to the host)."""
        where = self.arrays.download if on_host else self.arrays.here
        return {f"{SurfaceOrder.NAME}.surfaces":
                self.detector.modules["module_key"][self.arrays.download(out.surfaces)],
                f"{SurfaceOrder.NAME}.offsets": where(out.surface_offsets),
                f"{SurfaceOrder.NAME}.indices": where(out.surface_order)}


class EarlySupplementarySeeding(PrototrackSeedingStage):
    """The bridge with its ``all`` supplementary seeding started early
    (``taas.stages.base.EarlyWork``): that seeding reads only the front end's outputs, so a
    pipeline starts it on a host thread as soon as the space points exist, and it runs while
    the GNN stages run on the device; the bridge then waits only for what is left of it. For
    backends whose other stages work on a device (on the host alone the thread would compete
    with the GNN stages for the same cores and blur their times). The seeds are the same."""

    EARLY_INPUTS: ClassVar[tuple[str, ...]] = tuple(
        s.name for s in (*Measurements.tensor_specs(), *Spacepoints.tensor_specs()))

    def __init__(self, detector: Detector, config: TracccSeedingConfig | None = None) -> None:
        super().__init__(detector, config)
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supplementary")
        self._early: tuple[tuple[np.ndarray, ...], Future[Seeds]] | None = None

    def start_early(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Start the ``all`` supplementary seeding of ``inputs`` (``EARLY_INPUTS``)."""
        self.drop_early()
        if self.config.supplementary_seeding == "all":
            work = self._threads.submit(all_supplementary_seeds, self.detector,
                                        Measurements.from_tensors(inputs),
                                        Spacepoints.from_tensors(inputs), self.config)
            # the arrays are held, so that no other event's can take their identity
            self._early = (tuple(inputs[name] for name in self.EARLY_INPUTS), work)

    def drop_early(self) -> None:
        """Forget started work (one already running finishes unused)."""
        if self._early is not None:
            self._early[1].cancel()
            self._early = None

    def supplementary_done(self, inputs: Mapping[str, np.ndarray]) -> Seeds | None:
        """The early seeds if they were started from these very input arrays."""
        early, self._early = self._early, None
        if early is None:
            return None
        held, work = early
        if all(inputs.get(name) is array
               for name, array in zip(self.EARLY_INPUTS, held, strict=True)):
            return work.result()
        work.cancel()
        return None


class PrototrackCkfStage(Stage):
    """The CKF from proto-track seeds: measurements + space points + the bridge's outputs ->
    track candidates (``taas.tracking.ckf.find_tracks`` with ``starts`` and, in
    ``constrained`` mode, ``seed_measurements``).

    Seeds whose start misses ``min_p`` / ``min_pT`` are dropped first. The navigation is built
    once per detector; ``last_stats`` holds the latest event's counters. ``kernels`` is the
    device hook (``taas.tracking.ckf.CkfKernels``: numba here, torch in the gpu backend).
    """

    NAME = "prototrack_ckf"
    INPUTS = (*Measurements.tensor_specs(), *Spacepoints.tensor_specs(),
              *Seeds.tensor_specs(), *SeedStartTable.tensor_specs(),
              *ProtoTracks.tensor_specs(SEED_MEASUREMENTS))
    OUTPUTS = Tracks.tensor_specs()
    ROW_ORDER = RowOrder(("measurements",),
                         index_inputs=("spacepoints.measurement_index",
                                       f"{SEED_MEASUREMENTS}.indices"),
                         index_outputs=("tracks.meas_indices",))

    def __init__(self, detector: Detector, config: TracccFindingConfig | None = None) -> None:
        super().__init__(detector)
        self.config = config or TracccFindingConfig()
        self.ckf_config = self.config.ckf_config()
        self.navigation = build_navigation(detector, margin=self.ckf_config.navigation_margin)
        self.last_stats: CkfStats | None = None
        self.kernels: CkfKernels = NUMBA_KERNELS

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.find(inputs, inputs[f"{SeedStartTable.NAME}.params"],
                         inputs[f"{SeedStartTable.NAME}.covariance"]).to_tensors()

    def find(self, inputs: Mapping[str, np.ndarray], params: Array, covariance: Array
             ) -> Tracks:
        """The CKF on the host ``inputs`` with the starts' ``params`` and ``covariance`` on
        the host or where the kernels work (a device stage's outputs, left there)."""
        arrays = self.kernels.arrays
        params, covariance = arrays.here(params), arrays.here(covariance)
        seeds = Seeds.from_tensors(inputs)
        lists = ProtoTracks.from_tensors(inputs, SEED_MEASUREMENTS)
        given = SeedStarts(inputs[f"{SeedStartTable.NAME}.module_key"], params, covariance)
        check_seed_inputs(len(seeds), len(inputs["measurements.module_key"]), given, None)
        keep = np.flatnonzero(arrays.download(passes_momentum_cuts(
            params, self.config.min_p, self.config.min_pT, arrays.xp)))
        kept = arrays.upload(keep)
        starts = SeedStarts(given.module_key[keep], params[kept], covariance[kept])
        # empty offsets: every seed has an empty list
        offsets = lists["offsets"] if len(lists["offsets"]) else np.zeros(len(seeds) + 1,
                                                                          np.int64)
        offsets, indices = take_lists(offsets, lists["indices"], keep)
        constrained = self.config.mode == "constrained"
        tracks, self.last_stats = find_tracks(
            self.detector, self.navigation, Measurements.from_tensors(inputs),
            Spacepoints.from_tensors(inputs), seeds.take(keep), self.ckf_config,
            starts=starts, seed_measurements=(offsets, indices) if constrained else None,
            kernels=self.kernels)
        return tracks
