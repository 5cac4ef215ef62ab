"""``Detector``: vectorised geometry on top of the module table, loaded once per process."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from taas.detector.modules import ROTATION_COLUMNS, Modules
from taas.errors import InputError


class Detector:
    """Module table plus fast lookups and coordinate transforms for many points at once.

    Every method takes module *rows* (``index_of(keys)``) so that one key lookup serves many
    transforms.
    """

    def __init__(self, modules: Modules, name: str = "detector") -> None:
        keys = modules["module_key"]
        if len(np.unique(keys)) != len(keys):
            raise InputError(f"{name}: duplicate module keys in the module table")
        order = np.argsort(keys, kind="stable")
        self.modules = modules.take(order)
        self.name = name
        #: Material description (``taas.detector.material.MaterialTable``) when one is known.
        self.material: object | None = None
        #: The field the data were simulated in (``taas.detector.field``) when it is not the
        #: uniform field of the track math's configs.
        self.field: object | None = None

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, {len(self)} modules)"

    @cached_property
    def rotation(self) -> np.ndarray:
        """(n, 3, 3) local->global rotations; columns are the u, v, w axes in global frame."""
        m = self.modules
        return np.stack([m[c] for c in ROTATION_COLUMNS], axis=1).reshape(-1, 3, 3)

    @cached_property
    def center(self) -> np.ndarray:
        m = self.modules
        return np.stack([m["cx"], m["cy"], m["cz"]], axis=1)

    # --- lookups -----------------------------------------------------------------------------
    def index_of(self, module_keys: npt.ArrayLike, *, source: str | Path | None = None,
                 column: str = "module_key") -> np.ndarray:
        """Row of each key; an unknown key raises ``InputError`` naming its first row."""
        keys = np.asarray(module_keys, dtype=np.uint64)
        table_keys = self.modules["module_key"]
        idx = np.searchsorted(table_keys, keys)
        idx_clipped = np.minimum(idx, len(table_keys) - 1)
        bad = (idx >= len(table_keys)) | (table_keys[idx_clipped] != keys)
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"module key {int(keys[row])} is not a module of detector {self.name!r} "
                f"({int(bad.sum())} rows affected)", path=source, row=row, column=column)
        return idx_clipped

    # --- transforms --------------------------------------------------------------------------
    def local_to_global(self, rows: np.ndarray, u: npt.ArrayLike, v: npt.ArrayLike,
                        w: npt.ArrayLike = 0.0) -> np.ndarray:
        """(n, 3) global positions of local points (u, v, w) on modules ``rows``."""
        local = np.stack(np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float),
                                             np.asarray(w, float)), axis=-1)
        return self.center[rows] + np.einsum("nij,nj->ni", self.rotation[rows], local)

    def global_to_local(self, rows: np.ndarray, xyz: npt.ArrayLike) -> np.ndarray:
        """(n, 3) local (u, v, w) of global points on modules ``rows``."""
        d = np.asarray(xyz, float) - self.center[rows]
        return np.einsum("nji,nj->ni", self.rotation[rows], d)

    def channel_to_local(self, rows: np.ndarray, ch0: npt.ArrayLike,
                         ch1: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Local (u, v) of cell centres."""
        m = self.modules
        u = -m["max_hu"][rows] + (np.asarray(ch0) + 0.5) * m["pitch_u"][rows]
        v = -m["hv"][rows] + (np.asarray(ch1) + 0.5) * m["pitch_v"][rows]
        return u, v

    def local_to_channel(self, rows: np.ndarray, u: npt.ArrayLike,
                         v: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Channel indices of the cells containing local points (may be out of range)."""
        m = self.modules
        ch0 = np.floor((np.asarray(u) + m["max_hu"][rows]) / m["pitch_u"][rows]).astype(np.int32)
        ch1 = np.floor((np.asarray(v) + m["hv"][rows]) / m["pitch_v"][rows]).astype(np.int32)
        return ch0, ch1

    def channel_in_range(self, rows: np.ndarray, ch0: npt.ArrayLike,
                         ch1: npt.ArrayLike) -> np.ndarray:
        """True where (ch0, ch1) is a channel of the module's readout grid."""
        m = self.modules
        ch0, ch1 = np.asarray(ch0), np.asarray(ch1)
        return (ch0 >= 0) & (ch0 < m["n_u"][rows]) & (ch1 >= 0) & (ch1 < m["n_v"][rows])

    def inside_bounds(self, rows: np.ndarray, u: npt.ArrayLike, v: npt.ArrayLike,
                      tolerance: float = 0.0) -> np.ndarray:
        """True where local (u, v) lies within the module's trapezoid (plus ``tolerance`` mm)."""
        m = self.modules
        hv = m["hv"][rows]
        frac = (np.asarray(v) + hv) / (2 * hv)
        half_u = m["min_hu"][rows] + (m["max_hu"][rows] - m["min_hu"][rows]) * frac
        return (np.abs(v) <= hv + tolerance) & (np.abs(u) <= half_u + tolerance)

    # --- persistence -------------------------------------------------------------------------
    def to_parquet(self, path: str | Path) -> None:
        """Save the module table (the fast path: no ACTS or CSV parsing on reload)."""
        table = self.modules.to_arrow().replace_schema_metadata({"taas.detector": self.name})
        pq.write_table(table, str(path))

    @classmethod
    def from_parquet(cls, path: str | Path) -> Detector:
        try:
            table = pq.read_table(str(path))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read detector parquet: {exc}", path=path) from exc
        meta = table.schema.metadata or {}
        name = meta.get(b"taas.detector", Path(path).stem.encode()).decode()
        try:
            modules = Modules.from_arrow(table)
        except InputError as exc:
            raise InputError(exc.reason, path=path) from exc
        return cls(modules, name=name)
