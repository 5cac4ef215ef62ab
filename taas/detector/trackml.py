"""Load TrackML's ``detectors.csv`` into a ``Detector``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taas.detector import geometry_id
from taas.detector.detector import Detector
from taas.detector.field import TRACKML_SOLENOID
from taas.detector.modules import ROTATION_COLUMNS, Modules
from taas.io.csv_table import read_csv_columns

#: Columns of TrackML's detectors.csv and the dtype each must parse as.
DETECTOR_COLUMNS: dict[str, str] = {
    "volume_id": "i4", "layer_id": "i4", "module_id": "i4",
    "cx": "f8", "cy": "f8", "cz": "f8",
    **dict.fromkeys(ROTATION_COLUMNS, "f8"),
    "module_t": "f8", "module_minhu": "f8", "module_maxhu": "f8", "module_hv": "f8",
    "pitch_u": "f8", "pitch_v": "f8",
}


def trackml_module_keys(volume: np.ndarray, layer: np.ndarray, module: np.ndarray) -> np.ndarray:
    """TrackML (volume_id, layer_id, module_id) packed as an ACTS geometry id."""
    return geometry_id.encode(volume=volume, layer=layer, sensitive=module)


def load_trackml_detector(path: str | Path) -> Detector:
    """Read ``detectors.csv`` (plain or .gz, with or without a leading unnamed index column).

    The detector carries the field TrackML's events were simulated in
    (``taas.detector.field.TRACKML_SOLENOID``), so tracks are propagated in it."""
    c = read_csv_columns(path, DETECTOR_COLUMNS)
    n_u = np.rint(2 * c["module_maxhu"] / c["pitch_u"]).astype(np.int32)
    n_v = np.rint(2 * c["module_hv"] / c["pitch_v"]).astype(np.int32)
    modules = Modules(
        module_key=trackml_module_keys(c["volume_id"], c["layer_id"], c["module_id"]),
        volume_id=c["volume_id"], layer_id=c["layer_id"], module_id=c["module_id"],
        cx=c["cx"], cy=c["cy"], cz=c["cz"],
        **{k: c[k] for k in ROTATION_COLUMNS},
        thickness=c["module_t"], min_hu=c["module_minhu"], max_hu=c["module_maxhu"],
        hv=c["module_hv"], pitch_u=c["pitch_u"], pitch_v=c["pitch_v"], n_u=n_u, n_v=n_v,
    )
    detector = Detector(modules, name="trackml")
    detector.field = TRACKML_SOLENOID
    return detector
