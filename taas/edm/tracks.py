"""Track-level tables: graph edges, proto-tracks (CSR) and fitted tracks."""

from __future__ import annotations

import numpy as np

from taas.edm.table import Table, col


class Edges(Table):
    """Directed graph edges between space points, with an optional score."""

    NAME = "edges"
    SPECS = (
        col("src", "i8", "space point index", index_of="spacepoints"),
        col("dst", "i8", "space point index", index_of="spacepoints"),
        col("score", "f4", "classifier score, 1 when unscored"),
    )


class Seeds(Table):
    """Space-point triplets (bottom, middle, top) that start track finding."""

    NAME = "seeds"
    SPECS = (
        col("spacepoints", "i8", "bottom, middle, top space point indices", shape=(-1, 3),
            index_of="spacepoints"),
        col("quality", "f4", "seed filter weight, higher is better"),
        col("z_vertex", "f4", "seed's z at the beam line (mm)"),
    )


class ProtoTracks(Table):
    """Candidate tracks as measurement lists in CSR form.

    Track i is ``indices[offsets[i]:offsets[i + 1]]``.
    """

    NAME = "prototracks"
    SPECS = (
        col("offsets", "i8", "n_tracks + 1 entries, starting at 0"),
        col("indices", "i8", "measurement indices", index_of="measurements"),
    )
    ROW_GROUPS = (("offsets",), ("indices",))

    def __len__(self) -> int:
        return max(len(self["offsets"]) - 1, 0)


class Tracks(Table):
    """Fitted tracks: bound parameters on a reference module, covariance, quality.

    Measurement lists are CSR (``meas_offsets`` has n_tracks + 1 entries).
    """

    NAME = "tracks"
    SPECS = (
        col("module_key", "u8", "reference surface of the parameters"),
        col("params", "f8", "loc0, loc1, phi, theta, q/p, t", shape=(-1, 6)),
        col("covariance", "f8", "6x6 bound covariance", shape=(-1, 6, 6)),
        col("chi2", "f8"),
        col("ndf", "i4"),
        col("meas_offsets", "i8"),
        col("meas_indices", "i8", index_of="measurements"),
    )
    ROW_GROUPS = (("module_key", "params", "covariance", "chi2", "ndf"), ("meas_offsets",),
                  ("meas_indices",))


def take_lists(offsets: np.ndarray, indices: np.ndarray, rows: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The CSR lists at ``rows`` (in that order, e.g. the tracks a selection keeps): offsets
    from 0 and the lists' indices, for ``ProtoTracks`` and ``Tracks`` alike."""
    lengths = np.diff(offsets)[rows]
    new = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new[1:])
    first = np.repeat(offsets[rows] - new[:-1], lengths)
    return new, indices[first + np.arange(new[-1])]
