"""Events given as space points, without cells: the pipelines' inputs from the hits' positions.

ExaTrkX-as-a-service's clients and Athena send space points, not cells; a TrackML directory
without its cells file, or an ACTS CSV event without ``-cells.csv``, is such an event. Its
truth-hit table still holds each measurement's reconstructed local position (``ref_u``,
``ref_v``: TrackML's hits.csv positions, ACTS' measurements.csv ``local0/1``) and its module,
which is all a space point is. ``spacepoint_inputs`` turns them into the tensors the front end
(clustering, space points) would have produced, so the pipelines start after it:

* ``measurements``: one per hit, in the hits' row order, variance pitch^2 / 12, no cluster
  (``n_cells``, ``size_u``, ``size_v``, ``charge`` 0: unknown);
* ``spacepoints``: their global positions (``taas.reco.spacepoints.place_measurements``);
* ``spacepoint_features``: all zero: without cells there is no cluster shape. Models that read
  it refuse such events (``taas.gnn.stages``); the positions-only models do not read it;
* ``clusters.cluster_id``: ``0..n-1``, one row per hit: the hits stand in for the cells, so the
  truth link of measurement ``i`` is hit ``i`` (``truth_cell_hit_ids``) and evaluation needs
  no special case.
"""

from __future__ import annotations

import numpy as np

from taas.edm import Clusters, Measurements
from taas.events.event import Event
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.spacepoints import place_measurements


def has_cells(event: Event) -> bool:
    """Whether the event comes with cells (else it is given as space points)."""
    return len(event.cells) > 0


def hit_measurements(event: Event) -> Measurements:
    """One measurement per truth hit, at the source's reconstructed local position."""
    hits, det = event.hits, event.detector
    rows = det.index_of(hits["module_key"], column="hits.module_key")
    n = len(hits)
    no_cluster = np.zeros(n, np.int32)
    return Measurements(
        module_key=hits["module_key"], local_u=hits["ref_u"], local_v=hits["ref_v"],
        var_u=det.modules["pitch_u"][rows] ** 2 / 12, var_v=det.modules["pitch_v"][rows] ** 2 / 12,
        size_u=no_cluster, size_v=no_cluster, n_cells=no_cluster, charge=np.zeros(n, np.float32))


def spacepoint_inputs(event: Event) -> dict[str, np.ndarray]:
    """The tensors clustering and space-point formation would give, from the hits alone."""
    meas = hit_measurements(event)
    rows = event.detector.index_of(meas.module_key, column="hits.module_key")
    points, _ = place_measurements(event.detector, rows, meas)  # its shape features: none
    no_shape = SpacepointFeatures({s.name: np.zeros(len(meas), s.dtype)
                                   for s in SpacepointFeatures.SPECS})
    return {**Clusters(cluster_id=np.arange(len(meas), dtype=np.int64)).to_tensors(),
            **meas.to_tensors(), **points.to_tensors(), **no_shape.to_tensors()}


def event_inputs(event: Event) -> dict[str, np.ndarray]:
    """What a pipeline starts from: the cells, or for an event without them its space points
    (the pipeline then skips clustering and space-point formation)."""
    return event.cells.to_tensors() if has_cells(event) else spacepoint_inputs(event)


def truth_cell_hit_ids(event: Event) -> np.ndarray:
    """Truth hit of each row of ``clusters.cluster_id``: the cells' ``hit_id``, or for an event
    given as space points the hits' own ids (one stand-in cell per hit)."""
    return np.asarray(event.cells["hit_id"] if has_cells(event) else event.hits["hit_id"],
                      np.int64)


def has_cluster_shape(features_n_cells: np.ndarray) -> bool:
    """Whether space points carry cluster shapes (a real cluster has at least one cell): False
    for the inputs ``spacepoint_inputs`` makes. An empty event counts as having them."""
    return len(features_n_cells) == 0 or bool(np.any(np.asarray(features_n_cells) > 0))
