"""Detector-level tables: cells, clusters, measurements, space points."""

from __future__ import annotations

from taas.edm.table import Table, col


class Cells(Table):
    """Fired readout cells (pixels / strips) of one event."""

    NAME = "cells"
    SPECS = (
        col("module_key", "u8", "ACTS-packed 64-bit module id"),
        col("ch0", "i4", "channel index along local u"),
        col("ch1", "i4", "channel index along local v"),
        col("value", "f4", "deposited charge / activation"),
        col("timestamp", "f4", "time stamp (ns), 0 when not simulated"),
        col("hit_id", "i8", "truth link: TrackML hit or ACTS measurement that made it, -1 none"),
    )


class Clusters(Table):
    """Cluster label of each cell (same row order as the event's cells)."""

    NAME = "clusters"
    SPECS = (col("cluster_id", "i8", "index of the measurement this cell belongs to",
                  index_of="measurements"),)


class Measurements(Table):
    """Clusters turned into local 2D measurements on their module."""

    NAME = "measurements"
    SPECS = (
        col("module_key", "u8"),
        col("local_u", "f8", "mm"),
        col("local_v", "f8", "mm"),
        col("var_u", "f8", "mm^2"),
        col("var_v", "f8", "mm^2"),
        col("size_u", "i4", "cluster extent along u (cells)"),
        col("size_v", "i4", "cluster extent along v (cells)"),
        col("n_cells", "i4"),
        col("charge", "f4", "summed cell values"),
    )


class Spacepoints(Table):
    """Global positions of measurements plus the features graph building uses."""

    NAME = "spacepoints"
    SPECS = (
        col("measurement_index", "i8", "row in the measurements table",
            index_of="measurements"),
        col("x", "f8", "mm"),
        col("y", "f8", "mm"),
        col("z", "f8", "mm"),
        col("r", "f8", "mm"),
        col("phi", "f8", "rad"),
        col("eta", "f8"),
    )
