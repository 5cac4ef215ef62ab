"""The ACTS Generic detector as a taas ``Detector``, plus its digitization configuration.

The Generic detector (Gen1) is the TrackML detector: same 18728 modules, same centres and
thicknesses. Its readout segmentation is *ours* (``SEGMENTATION``): ACTS only knows surfaces,
so the grid that turns hits into cells is defined here once and handed to ACTS' geometric
digitization through ``write_digitization_config``, so that simulated cells and the module
table always agree channel by channel.

Importing this module needs no ACTS; building the detector does (``import acts`` inside).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taas.detector.detector import Detector
from taas.detector.geometry_id import encode
from taas.detector.modules import ROTATION_COLUMNS, Modules
from taas.errors import InputError, TaasError
from taas.io.atomic import atomic_write

log = logging.getLogger(__name__)

#: Readout pitch (pitch_u, pitch_v) in mm per volume id: pixels, short strips, long strips.
#: The stored pitch is adjusted so that a whole number of channels covers the module.
SEGMENTATION: Mapping[int, tuple[float, float]] = {
    **dict.fromkeys((7, 8, 9), (0.05, 0.05)),
    **dict.fromkeys((12, 13, 14), (0.08, 1.2)),
    **dict.fromkeys((16, 17, 18), (0.12, 10.4)),
}

#: Strip volumes (short strips 12-14, long strips 16-18); the others (7-9) are pixels.
STRIP_VOLUMES: tuple[int, ...] = (12, 13, 14, 16, 17, 18)

#: Readout of the strip volumes in the digitization config: ``"analog"`` keeps each cell's
#: deposited path length as its value (the default, on which the shipped models were trained);
#: ``"binary"`` sets ACTS' ``digital`` flag there (every fired strip weighs the same in the
#: cluster position) and ``taas.events.simulation`` writes each fired strip's value as 1.0 (ACTS
#: 48 keeps the path length in the cells file even when ``digital``), as in TrackML's strips and
#: the binary ABCStar readout of the ATLAS ITk strips. Pixels stay analog.
STRIP_READOUTS: tuple[str, ...] = ("analog", "binary")


def check_strip_readout(strip_readout: str) -> str:
    """``strip_readout`` when it is one of ``STRIP_READOUTS``; ``InputError`` (a
    ``ValueError``) naming the valid ones otherwise."""
    if strip_readout not in STRIP_READOUTS:
        raise InputError(f"strip_readout: unknown strip readout {strip_readout!r}; valid: "
                         f"{list(STRIP_READOUTS)}")
    return strip_readout


#: Gaussian smearing (mm of path length) of each cell's value in ACTS' geometric digitization:
#: small, so that values stay positive and charge-weighted clustering stays meaningful.
CHARGE_SMEARING_STDDEV = 0.01

#: ACTS stores thicknesses as float32 (0.15 -> 0.15000000596...); rounding to this many decimals
#: restores the design value that TrackML's ``detectors.csv`` quotes.
_THICKNESS_DECIMALS = 6


def _segment(volume_id: np.ndarray, max_hu: np.ndarray, hv: np.ndarray) -> dict[str, np.ndarray]:
    """Channel counts and exact pitches of the grid covering [-max_hu, max_hu] x [-hv, hv]."""
    unknown = sorted(set(np.unique(volume_id).tolist()) - set(SEGMENTATION))
    if unknown:
        raise TaasError(f"no readout segmentation for volumes {unknown}")
    volumes = np.array(sorted(SEGMENTATION))
    pitches = np.array([SEGMENTATION[v] for v in volumes])
    nominal = pitches[np.searchsorted(volumes, volume_id)]
    n_u = np.maximum(np.rint(2 * max_hu / nominal[:, 0]), 1).astype(np.int32)
    n_v = np.maximum(np.rint(2 * hv / nominal[:, 1]), 1).astype(np.int32)
    return {"n_u": n_u, "n_v": n_v, "pitch_u": 2 * max_hu / n_u, "pitch_v": 2 * hv / n_v}


def _surface_rows(tracking_geometry: Any) -> dict[str, np.ndarray]:
    """One row per sensitive surface: ids, centre, rotation, thickness and bounds.

    The rotation columns come from ``localToGlobal`` of the local unit vectors and the surface
    normal, so they hold whatever convention ACTS applies (no reliance on matrix bindings).
    """
    import acts

    gctx = acts.GeometryContext.dangerouslyDefaultConstruct()
    surfaces: list[Any] = []
    tracking_geometry.visitSurfaces(surfaces.append)
    direction = acts.Vector3(0.0, 0.0, 1.0)
    origin, unit_u, unit_v = acts.Vector2(0, 0), acts.Vector2(1, 0), acts.Vector2(0, 1)

    n = len(surfaces)
    ids = np.zeros((n, 4), dtype=np.uint64)
    geom = np.zeros((n, 3 + 9 + 1 + 3))
    for i, s in enumerate(surfaces):  # one pass over ~19k surfaces: ACTS offers no bulk access
        gid = s.geometryId
        ids[i] = (gid.value, gid.volume, gid.layer, gid.sensitive)
        c = np.array(s.localToGlobal(gctx, origin, direction))
        u = np.array(s.localToGlobal(gctx, unit_u, direction)) - c
        v = np.array(s.localToGlobal(gctx, unit_v, direction)) - c
        w = np.array(s.normal(gctx, acts.Vector3(*c), direction))
        bounds = s.bounds
        values = bounds.values()
        kind = type(bounds).__name__
        if kind == "RectangleBounds":  # (min x, min y, max x, max y)
            min_hu = max_hu = 0.5 * (values[2] - values[0])
            hv = 0.5 * (values[3] - values[1])
            if abs(values[0] + values[2]) > 1e-9 or abs(values[1] + values[3]) > 1e-9:
                raise TaasError(f"surface {gid}: off-centre rectangle bounds {values}")
        elif kind == "TrapezoidBounds":  # (half x at -y, half x at +y, half y, rotation angle)
            min_hu, max_hu, hv = values[0], values[1], values[2]
            if len(values) > 3 and values[3] != 0.0:
                raise TaasError(f"surface {gid}: rotated trapezoid bounds {values}")
        else:
            raise TaasError(f"surface {gid}: unsupported bounds {kind}")
        geom[i] = (*c, *np.stack([u, v, w], axis=1).ravel(), s.thickness, min_hu, max_hu, hv)

    cols: dict[str, np.ndarray] = {
        "module_key": ids[:, 0],
        "volume_id": ids[:, 1].astype(np.int32),
        "layer_id": ids[:, 2].astype(np.int32),
        "module_id": ids[:, 3].astype(np.int32),
        "cx": geom[:, 0], "cy": geom[:, 1], "cz": geom[:, 2],
    }
    for j, name in enumerate(ROTATION_COLUMNS):
        cols[name] = geom[:, 3 + j]
    cols["thickness"] = np.round(geom[:, 12], _THICKNESS_DECIMALS)
    cols["min_hu"], cols["max_hu"], cols["hv"] = geom[:, 13], geom[:, 14], geom[:, 15]
    return cols


def _check(cols: Mapping[str, np.ndarray]) -> None:
    """Guard the conventions the rest of taas relies on (cheap, runs on every build)."""
    expected = encode(volume=cols["volume_id"], layer=cols["layer_id"],
                      sensitive=cols["module_id"])
    if not np.array_equal(expected, cols["module_key"]):
        raise TaasError("ACTS geometry ids disagree with taas.detector.geometry_id.encode")
    rot = np.stack([cols[c] for c in ROTATION_COLUMNS], axis=1).reshape(-1, 3, 3)
    gram = np.einsum("nki,nkj->nij", rot, rot)
    if not np.allclose(gram, np.eye(3), atol=1e-9):
        raise TaasError("module axes from ACTS are not orthonormal")
    if not np.allclose(np.linalg.det(rot), 1.0, atol=1e-9):
        raise TaasError("module axes (u, v, normal) from ACTS are not right-handed")
    if np.any(cols["min_hu"] > cols["max_hu"]):
        raise TaasError("trapezoid narrower at +v than at -v: taas expects width growing with v")


@lru_cache(maxsize=1)
def _cached_detector() -> Detector:
    cols = _surface_rows(generic_tracking_geometry()[1])
    _check(cols)
    cols.update(_segment(cols["volume_id"], cols["max_hu"], cols["hv"]))
    detector = Detector(Modules(cols), name="acts-generic")
    log.debug("built %r", detector)
    return detector


def build_generic_detector() -> Detector:
    """The Generic detector's module table with taas' segmentation (built once per process)."""
    return _cached_detector()


@lru_cache(maxsize=1)
def generic_tracking_geometry() -> tuple[Any, Any]:
    """ACTS' ``(GenericDetector, TrackingGeometry)``, kept alive together and built once.

    The detector object owns the geometry's detector elements, so both must outlive any
    sequencer using the geometry.
    """
    import acts
    import acts.examples

    cfg = acts.examples.GenericDetector.Config()
    for name in ("logLevel", "layerLogLevel", "surfaceLogLevel", "volumeLogLevel"):
        setattr(cfg, name, acts.logging.WARNING)
    generic = acts.examples.GenericDetector(cfg)
    return generic, generic.trackingGeometry()


def _geometric_entry(max_hu: float, hv: float, n_u: int, n_v: int,
                     thickness: float, *, digital: bool = False) -> dict[str, Any]:
    """One ``digitization-configuration`` value: ACTS' geometric digitization on our grid,
    binary cells (value 1) where ``digital``."""

    def axis(name: str, half: float, bins: int) -> dict[str, Any]:
        return {"bins": int(bins), "max": float(half), "min": -float(half), "option": "open",
                "type": "equidistant", "value": name}

    return {
        "geometric": {
            "digital": bool(digital),
            "indices": [0, 1],
            "segmentation": {"binningdata": [axis("binX", max_hu, n_u), axis("binY", hv, n_v)]},
            "thickness": float(thickness),
            "threshold": 0.0,
            "charge-smearing": {"mean": 0.0, "stddev": CHARGE_SMEARING_STDDEV, "type": "Gauss"},
        }
    }


def digitization_entries(detector: Detector, *, strip_readout: str = "analog"
                         ) -> list[dict[str, Any]]:
    """Hierarchy-map entries reproducing the detector's grid exactly on every module.

    Endcap layers hold rings of different sizes, so one entry per layer cannot express them:
    each layer gets an entry for its commonest module shape and per-module entries override it
    for the others (ACTS looks up the most specific entry), keeping the file small.
    ``strip_readout`` (``STRIP_READOUTS``) picks analog or binary cells in ``STRIP_VOLUMES``.
    """
    binary = check_strip_readout(strip_readout) == "binary"
    m = detector.modules.columns()
    shape_cols = ("max_hu", "hv", "n_u", "n_v", "thickness")
    frame = {k: m[k] for k in ("volume_id", "layer_id", "module_id", *shape_cols)}
    df = pd.DataFrame(frame)
    counts = df.groupby(["volume_id", "layer_id", *shape_cols], sort=True).size()
    counts = counts.reset_index(name="count").sort_values(
        ["volume_id", "layer_id", "count"], ascending=[True, True, False], kind="stable")
    common = counts.drop_duplicates(["volume_id", "layer_id"])
    merged = df.merge(common, on=["volume_id", "layer_id"], suffixes=("", "_layer"))
    differs = np.zeros(len(merged), dtype=bool)
    for c in shape_cols:
        differs |= merged[c].to_numpy() != merged[f"{c}_layer"].to_numpy()

    entries = []
    for r in common.itertuples(index=False):
        digital = binary and int(r.volume_id) in STRIP_VOLUMES
        entries.append({"volume": int(r.volume_id), "layer": int(r.layer_id),
                        "value": _geometric_entry(r.max_hu, r.hv, r.n_u, r.n_v, r.thickness,
                                                  digital=digital)})
    for r in merged[differs].sort_values(["volume_id", "layer_id", "module_id"]).itertuples():
        digital = binary and int(r.volume_id) in STRIP_VOLUMES
        entries.append({"volume": int(r.volume_id), "layer": int(r.layer_id),
                        "sensitive": int(r.module_id),
                        "value": _geometric_entry(r.max_hu, r.hv, r.n_u, r.n_v, r.thickness,
                                                  digital=digital)})
    return entries


def digitization_config_json(detector: Detector, *, strip_readout: str = "analog") -> str:
    """The ACTS digitization JSON text for ``detector`` (see ``write_digitization_config``),
    with ``strip_readout`` strips (``digitization_entries``)."""
    doc = {
        "acts-geometry-hierarchy-map": {
            "format-version": 0, "value-identifier": "digitization-configuration"},
        "entries": digitization_entries(detector, strip_readout=strip_readout),
    }
    return json.dumps(doc, indent=1)


def write_digitization_config(detector: Detector, path: str | Path) -> None:
    """Write ACTS' geometric digitization JSON whose cells are exactly the detector's grid."""
    text = digitization_config_json(detector)
    atomic_write(Path(path), lambda p: p.write_text(text))
    log.debug("wrote digitization config for %r to %s", detector, path)
