"""The module table: one row per sensitive module, the single description of a detector."""

from __future__ import annotations

from taas.edm.table import Table, col

#: Rotation columns: rot_<global axis><local axis>, global = centre + R @ (u, v, w).
ROTATION_COLUMNS = tuple(f"rot_{g}{loc}" for g in "xyz" for loc in "uvw")


class Modules(Table):
    """Sensitive modules: ids, placement, trapezoid bounds and readout segmentation.

    Bounds follow TrackML's ``detectors.csv``: the half width along u grows linearly from
    ``min_hu`` at v = -hv to ``max_hu`` at v = +hv (a rectangle when they are equal). The readout
    grid covers [-max_hu, max_hu] x [-hv, hv] with ``n_u`` x ``n_v`` cells of pitch
    ``pitch_u`` x ``pitch_v``; channel 0 starts at the lower edge.
    """

    NAME = "modules"
    SPECS = (
        col("module_key", "u8", "ACTS-packed module id (GeometryIdentifier value)"),
        col("volume_id", "i4"),
        col("layer_id", "i4"),
        col("module_id", "i4", "TrackML module_id / ACTS sensitive id"),
        col("cx", "f8", "centre (mm)"),
        col("cy", "f8"),
        col("cz", "f8"),
        *(col(name, "f8") for name in ROTATION_COLUMNS),
        col("thickness", "f8", "mm"),
        col("min_hu", "f8", "half width along u at v = -hv (mm)"),
        col("max_hu", "f8", "half width along u at v = +hv (mm)"),
        col("hv", "f8", "half length along v (mm)"),
        col("pitch_u", "f8", "mm"),
        col("pitch_v", "f8", "mm"),
        col("n_u", "i4", "channels along u"),
        col("n_v", "i4", "channels along v"),
    )
