"""Truth tables: simulated hits (one per truth cluster) and particles."""

from __future__ import annotations

import numpy as np

from taas.edm.table import Table, col


class TruthHits(Table):
    """One row per truth cluster: TrackML hit or ACTS measurement.

    ``hit_id`` is what ``Cells.hit_id`` points at. ``ref_u``/``ref_v`` hold the source's own
    reconstructed local position (TrackML hits.csv, ACTS measurements.csv), kept as the
    reference that clustering is validated against.
    """

    NAME = "hits"
    SPECS = (
        col("hit_id", "i8"),
        col("particle_id", "u8", "0 = noise"),
        col("module_key", "u8"),
        col("tx", "f8", "true position (mm)"),
        col("ty", "f8"),
        col("tz", "f8"),
        col("tt", "f8", "true time as the source writes it (ACTS CSV: mm/c), 0 if unknown"),
        col("tpx", "f8", "true momentum (GeV)"),
        col("tpy", "f8"),
        col("tpz", "f8"),
        col("weight", "f8", "TrackML score weight, 0 when unknown"),
        col("ref_u", "f8", "source's reconstructed local u (mm)"),
        col("ref_v", "f8", "source's reconstructed local v (mm)"),
    )


class Particles(Table):
    """Generated particles with derived kinematics."""

    NAME = "particles"
    SPECS = (
        col("particle_id", "u8"),
        col("particle_type", "i4", "PDG id"),
        col("q", "f4", "charge (e)"),
        col("vx", "f8", "vertex (mm)"),
        col("vy", "f8"),
        col("vz", "f8"),
        col("vt", "f8", "vertex time (ns)"),
        col("px", "f8", "momentum (GeV)"),
        col("py", "f8"),
        col("pz", "f8"),
        col("m", "f8", "mass (GeV)"),
        col("vertex_id", "i8", "index of the production vertex in the event"),
        col("primary", "?", "produced at a primary vertex"),
        col("nhits", "i4", "truth hits in the event"),
    )

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self["px"], self["py"])

    @property
    def eta(self) -> np.ndarray:
        return np.arcsinh(np.divide(self["pz"], self.pt, out=np.zeros_like(self["pz"]),
                                    where=self.pt > 0))

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self["py"], self["px"])
