"""Detector material as a small table: what the track fit must know to model material effects.

Why a table: ACTS' Fatras scatters (and slows down) particles in *every* surface that carries
material, not only in the sensitive modules. The ACTS Generic detector (``GenericDetectorBuilder``
in ACTS' ``Examples/Detectors/GenericDetector``) assigns ``HomogeneousSurfaceMaterial`` to

* each sensitive module: silicon (X0 = 95.7 mm) of the module thickness (0.15 / 0.25 / 0.35 mm);
* the beam pipe: a cylinder r = 19 mm, 0.8 mm beryllium (X0 = 352.8 mm);
* the pixel support tube (PST): a cylinder r = 200 mm, 1.8 mm beryllium;
* per layer a "layer material" slab of silicon: pixels 1.5 mm (barrel: outer approach cylinder,
  endcaps: the disc representing the layer), short strips 2 mm barrel (inner approach) / 2.5 mm
  discs, long strips 2.5 mm barrel / 3.5 mm discs: 1.6-3.7 % X0 per layer, ten to twenty times a
  pixel module's 0.16 %.

Navigation layers (odd ACTS layer ids, between real layers and at volume boundaries) carry a
copy of the disc material in the geometry, but ACTS' navigator does not stop on them: kinks in
Fatras truth (direction change between consecutive simulated hits, located along the helix by
the position offset they cause) sit only at the even layers' surfaces, never at z = 650, 1360,
... So only even-layer (real layer) surfaces are kept.

Table layout (``material.parquet`` next to ``detector.parquet``): one row per material surface,
``kind`` 0 = sensitive module (``module_key`` set), 1 = cylinder about the z axis (``radius``,
``zmin``/``zmax``), 2 = disc normal to z (``z``, ``rmin``/``rmax``); per row the slab
``thickness`` (mm) and the material constants ACTS stores (``x0``, ``l0`` mm; ``ar`` g/mol;
``z_atomic``; ``molar_rho`` and ``molar_e_rho`` mol/mm^3; ``excitation`` GeV: the mean
excitation energy I of the Bethe formula).

``generic_material()`` builds it from pyacts; ``load_material`` reads it and, when absent, falls
back to the modules' silicon only (logging that it does), the model taas used before.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taas.detector.detector import Detector
from taas.errors import InputError

log = logging.getLogger(__name__)

#: Row kinds.
MODULE, CYLINDER, DISC = 0, 1, 2
#: File name next to ``detector.parquet``.
MATERIAL_FILE = "material.parquet"

#: Silicon as ACTS' Generic detector defines it (``kSiliconMaterial``): X0, L0 (mm), A (g/mol),
#: Z, molar density and molar electron density (mol/mm^3), mean excitation energy (GeV).
SILICON = {"x0": 95.7, "l0": 465.2, "ar": 28.03, "z_atomic": 14.0, "molar_rho": 8.27685e-08,
           "molar_e_rho": 1.15876e-06, "excitation": 1.72042e-07}

COLUMNS = ("kind", "module_key", "volume_id", "layer_id", "radius", "z", "rmin", "rmax", "zmin",
           "zmax", "thickness", "x0", "l0", "ar", "z_atomic", "molar_rho", "molar_e_rho",
           "excitation")
_FLOAT_COLUMNS = COLUMNS[4:]

_ACTS_KEYS = {"x0": "x0", "l0": "l0", "ar": "ar", "z": "z_atomic", "molar_rho": "molar_rho",
              "molar_e_rho": "molar_e_rho", "mean_excitation_energy": "excitation",
              "t": "thickness"}


class MaterialTable:
    """Column arrays of material surfaces (see the module docstring), split by kind on demand."""

    def __init__(self, columns: dict[str, np.ndarray], *, source: str = "") -> None:
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise InputError(f"material table lacks columns {missing}", path=source or None)
        n = len(columns["kind"])
        self.columns = {c: np.asarray(columns[c]) for c in COLUMNS}
        if any(len(v) != n for v in self.columns.values()):
            raise InputError("material table columns differ in length", path=source or None)
        self.columns["kind"] = self.columns["kind"].astype(np.int8)
        self.columns["module_key"] = self.columns["module_key"].astype(np.uint64)
        self.source = source

    def __len__(self) -> int:
        return len(self.columns["kind"])

    def __repr__(self) -> str:
        k = self.columns["kind"]
        return (f"MaterialTable({int((k == MODULE).sum())} modules, "
                f"{int((k == CYLINDER).sum())} cylinders, {int((k == DISC).sum())} discs"
                f"{', ' + self.source if self.source else ''})")

    def rows(self, kind: int) -> dict[str, np.ndarray]:
        """The columns restricted to one kind."""
        sel = self.columns["kind"] == kind
        return {c: v[sel] for c, v in self.columns.items()}

    @property
    def x_over_x0(self) -> np.ndarray:
        """Slab thickness in radiation lengths, per row (normal incidence)."""
        return self.columns["thickness"] / self.columns["x0"]

    def module_slabs(self, detector: Detector) -> np.ndarray:
        """(n_modules, 4) ``(thickness, x0, molar_e_rho, excitation)`` per detector row.

        Modules without a row fall back to silicon of the module table's thickness.
        """
        out = np.empty((len(detector), 4))
        out[:, 0] = detector.modules["thickness"]
        out[:, 1], out[:, 2], out[:, 3] = (SILICON["x0"], SILICON["molar_e_rho"],
                                           SILICON["excitation"])
        mods = self.rows(MODULE)
        if len(mods["kind"]):
            keys = detector.modules["module_key"]
            idx = np.searchsorted(keys, mods["module_key"])
            idx_c = np.minimum(idx, len(keys) - 1)
            ok = keys[idx_c] == mods["module_key"]
            rows = idx_c[ok]
            for j, name in enumerate(("thickness", "x0", "molar_e_rho", "excitation")):
                out[rows, j] = mods[name][ok]
        return out

    # --- persistence -------------------------------------------------------------------------
    def to_parquet(self, path: str | Path) -> None:
        pq.write_table(pa.table(self.columns), str(path))

    @classmethod
    def from_parquet(cls, path: str | Path) -> MaterialTable:
        try:
            table = pq.read_table(str(path))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read material parquet: {exc}", path=path) from exc
        return cls({c: table.column(c).to_numpy() for c in table.column_names},
                   source=str(path))


def silicon_only(detector: Detector) -> MaterialTable:
    """Material of the modules alone: silicon slabs of the module table's thickness."""
    n = len(detector)
    cols: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in _FLOAT_COLUMNS}
    cols["kind"] = np.full(n, MODULE, np.int8)
    cols["module_key"] = detector.modules["module_key"]
    cols["volume_id"] = detector.modules["volume_id"]
    cols["layer_id"] = detector.modules["layer_id"]
    cols["thickness"] = detector.modules["thickness"].astype(float)
    for name, value in SILICON.items():
        cols[name] = np.full(n, value)
    return MaterialTable(cols, source="silicon-only")


def _parse_slab(text: str) -> dict[str, float]:
    """Material constants from ``HomogeneousSurfaceMaterial.toString()`` (no bulk accessors)."""
    values = dict(re.findall(r"([a-z_0-9]+)=([-+0-9.eE]+)", text))
    try:
        return {ours: float(values[acts]) for acts, ours in _ACTS_KEYS.items()}
    except KeyError as exc:
        raise InputError(f"unexpected ACTS material description {text!r}") from exc


def material_from_tracking_geometry(tracking_geometry: Any) -> MaterialTable:
    """The material surfaces ACTS' navigator stops on, from a Gen1 ``TrackingGeometry``.

    Keeps sensitive surfaces and passive surfaces of real layers (even layer id); navigation
    layers (odd ids) are skipped (see the module docstring for the measurement behind this).
    """
    import acts

    gctx = acts.GeometryContext.dangerouslyDefaultConstruct()
    rows: list[dict[str, float]] = []
    for s in tracking_geometry.extractMaterialSurfaces():
        material = s.surfaceMaterial
        if material is None:
            continue
        if type(material).__name__ != "HomogeneousSurfaceMaterial":
            raise InputError(f"surface {s.geometryId}: unsupported material "
                             f"{type(material).__name__}")
        gid = s.geometryId
        row: dict[str, float] = dict.fromkeys(_FLOAT_COLUMNS, np.nan)
        row.update(_parse_slab(material.toString()))
        row["volume_id"], row["layer_id"] = gid.volume, gid.layer
        row["module_key"] = 0
        bounds = type(s.bounds).__name__
        values = list(s.bounds.values())
        center = np.array(s.center(gctx))
        if s.isSensitive:
            row["kind"], row["module_key"] = MODULE, gid.value
        elif gid.layer % 2 == 1:
            continue  # navigation layer: not visited by the navigator
        elif bounds == "CylinderBounds":
            row["kind"], row["radius"] = CYLINDER, values[0]
            row["zmin"], row["zmax"] = center[2] - values[1], center[2] + values[1]
        elif bounds == "RadialBounds":
            row["kind"], row["z"] = DISC, center[2]
            row["rmin"], row["rmax"] = values[0], values[1]
        else:
            raise InputError(f"surface {gid}: unsupported material surface bounds {bounds}")
        if not s.isSensitive and (abs(center[0]) > 1e-6 or abs(center[1]) > 1e-6):
            raise InputError(f"surface {gid}: passive surface off the beam line")
        rows.append(row)
    cols = {c: np.array([r[c] for r in rows]) for c in COLUMNS}
    return MaterialTable(cols, source="acts-generic")


@lru_cache(maxsize=1)
def generic_material() -> MaterialTable:
    """The ACTS Generic detector's material (needs pyacts; built once per process)."""
    from taas.detector.acts_generic import generic_tracking_geometry

    table = material_from_tracking_geometry(generic_tracking_geometry()[1])
    log.debug("built %r", table)
    return table


def write_material(table: MaterialTable, directory: str | Path) -> Path:
    """Save ``table`` as ``material.parquet`` in ``directory`` (next to ``detector.parquet``)."""
    path = Path(directory) / MATERIAL_FILE
    table.to_parquet(path)
    return path


def load_material(detector: Detector, directory: str | Path | None = None) -> MaterialTable:
    """Material for ``detector``: the table in ``directory``, else the best one available.

    Order: ``directory/material.parquet``; a table attached to the detector
    (``detector.material``); for the ACTS Generic detector, the table built from pyacts when
    ACTS is importable; else silicon modules only, logged as a warning because fits of data
    simulated with more material than that then have too-narrow pulls.
    """
    if directory is not None and (Path(directory) / MATERIAL_FILE).is_file():
        return MaterialTable.from_parquet(Path(directory) / MATERIAL_FILE)
    return material_for(detector)


def material_for(detector: Detector) -> MaterialTable:
    """The material attached to ``detector``, else built (Generic) or silicon-only (logged)."""
    attached = getattr(detector, "material", None)
    if isinstance(attached, MaterialTable):
        return attached
    table: MaterialTable | None = None
    # TrackML's detector is the ACTS Generic detector's geometry (the same 18,728 modules and
    # module keys), so the Generic material describes it better than bare silicon: on the real
    # TrackML sample the cpu chain finds 34 of 36 particles with no fakes against 33 with
    # 1.6% fakes (benchmarks/results/trackml_real_data.json)
    if detector.name in ("acts-generic", "trackml"):
        try:
            table = generic_material()
        except ImportError:
            log.warning("no material table for %r and ACTS is not importable: modelling the "
                        "module silicon only (passive material ignored)", detector)
    else:
        log.info("no material table for %r: modelling the module silicon only", detector)
    if table is None:
        table = silicon_only(detector)
    detector.material = table
    return table
