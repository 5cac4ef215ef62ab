"""Stage bases of the front end: cells -> clusters -> measurements -> space points.

Each base owns the contract (specs, configuration, input validation, empty events, the order of
its outputs) and runs the reference CPU algorithm in one hook; a backend overrides that hook
only (``measure`` for clustering, ``place`` for space points), so every backend gets the same
checks and the same output layout.
"""

from __future__ import annotations

import logging

import numpy as np

from taas.detector.detector import Detector
from taas.edm import Cells, Clusters, Measurements, Spacepoints
from taas.errors import InputError, TaasError
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.clustering import (
    CHANNEL_BITS,
    ClusteringConfig,
    measure_sorted_cells,
    pack_cell_keys,
)
from taas.reco.spacepoints import place_measurements
from taas.stages.base import RowOrder, Stage

log = logging.getLogger(__name__)


class ClusteringStage(Stage):
    """Cells -> clusters (a label per cell) -> local 2D measurements.

    Measurement ``k`` is the k-th cluster ordered by module key, then by first cell in
    (ch0, ch1) order; ``clusters.cluster_id`` gives each input cell's measurement, in input
    order. The base checks the cells, packs and sorts their keys (so every backend sees the same
    order and gives the same measurement order) and scatters the labels back; the hook
    ``measure`` labels the sorted cells and reduces each cluster.
    """

    NAME = "clustering"
    INPUTS = Cells.tensor_specs()
    OUTPUTS = Clusters.tensor_specs() + Measurements.tensor_specs()
    ROW_ORDER = RowOrder(("cells",), aligned_outputs=("clusters",))

    def __init__(self, detector: Detector, config: ClusteringConfig | None = None) -> None:
        super().__init__(detector)
        self.config = config if config is not None else ClusteringConfig()
        m = detector.modules
        limit = (1 << CHANNEL_BITS) - 1
        if len(detector) >= 1 << (63 - 2 * CHANNEL_BITS) or (
                len(detector) and max(int(m["n_u"].max()), int(m["n_v"].max())) >= limit):
            raise TaasError(f"{detector!r}: too many modules or channels for {CHANNEL_BITS}-bit "
                            "cell keys")

    def measure(self, key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, Measurements]:
        """Label per cell and measurements, for cells sorted by packed key (``key`` sorted,
        ``value`` in the same order). The device hook: numba on the CPU by default."""
        return measure_sorted_cells(self.detector, key, value, self.config)

    def _module_rows(self, module_key: np.ndarray) -> np.ndarray:
        """Detector row of each cell's module.

        Looked up in module-key order: a binary search over sorted queries is several times
        faster than over shuffled ones, and the sort is nearly free on the usual module-ordered
        input.
        """
        by_module = np.argsort(module_key)
        rows = np.empty(len(module_key), np.int64)
        try:
            rows[by_module] = self.detector.index_of(module_key[by_module])
        except InputError as exc:
            row = None if exc.row is None else int(by_module[exc.row])
            raise InputError(f"{self.qualified_name}: {exc.reason}", row=row,
                             column="cells.module_key") from None
        return rows

    def sorted_cell_keys(self, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
        """Cell keys packing (module row, ch0, ch1) and their sort order.

        Checks every channel against its module's grid first. Equal keys are duplicate cells:
        their relative order changes no cluster, so the (much faster, SIMD) unstable sort is
        enough.
        """
        rows = self._module_rows(cells.module_key)
        ch0, ch1 = cells.ch0, cells.ch1
        outside = ~self.detector.channel_in_range(rows, ch0, ch1)
        if np.any(outside):
            bad = int(np.flatnonzero(outside)[0])
            raise InputError(f"{self.qualified_name}: channel ({ch0[bad]}, {ch1[bad]}) lies "
                             f"outside the readout grid of module {int(cells.module_key[bad])} "
                             f"({int(outside.sum())} cells affected)", row=bad, column="cells.ch0")
        key = pack_cell_keys(rows, ch0, ch1)
        return key, np.argsort(key)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cells = Cells.from_tensors(inputs)
        n = len(cells)
        if n == 0:
            return {**Clusters.empty().to_tensors(), **Measurements.empty().to_tensors()}
        key, order = self.sorted_cell_keys(cells)
        label, measurements = self.measure(key[order], cells.value[order])
        cluster_id = np.empty(n, np.int64)
        cluster_id[order] = label
        log.debug("%s on %s: %d cells -> %d measurements", self.qualified_name, self.device, n,
                  len(measurements))
        return {**Clusters(cluster_id=cluster_id).to_tensors(), **measurements.to_tensors()}


class SpacepointStage(Stage):
    """Measurements -> one space point each (row ``i`` from measurement ``i``) and its
    cluster-shape features. The base validates the module keys (looking up their detector rows)
    and handles empty events; the hook ``place`` computes the points."""

    NAME = "spacepoints"
    INPUTS = Measurements.tensor_specs()
    OUTPUTS = Spacepoints.tensor_specs() + SpacepointFeatures.tensor_specs()
    ROW_ORDER = RowOrder(("measurements",), aligned_outputs=("spacepoints", "spacepoint_features"),
                         index_outputs=("spacepoints.measurement_index",))

    def place(self, rows: np.ndarray, meas: Measurements
              ) -> tuple[Spacepoints, SpacepointFeatures]:
        """Points and features of the measurements on detector rows ``rows``. The device hook:
        numpy on the CPU by default."""
        return place_measurements(self.detector, rows, meas)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        meas = Measurements.from_tensors(inputs)
        if len(meas) == 0:
            return {**Spacepoints.empty().to_tensors(), **SpacepointFeatures.empty().to_tensors()}
        rows = self.detector.index_of(meas.module_key, column="measurements.module_key")
        points, features = self.place(rows, meas)
        log.debug("%s on %s: %d space points", self.qualified_name, self.device, len(meas))
        return {**points.to_tensors(), **features.to_tensors()}
