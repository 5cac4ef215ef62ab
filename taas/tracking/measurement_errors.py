"""Measurement error model: the variances the Kalman fit and the CKF give each measurement.

Clustering attaches a variance to every centroid, ``(spread + 1/12) pitch^2`` per axis
(``taas.reco.clustering``): the charge spread of the cells plus a single cell's uniform
variance. That is the variance of the *cells*, not of the centroid. For a cluster of several
cells the centroid is much better than that (charge sharing between the cells interpolates the
crossing point), so the tracks fitted with those variances had perigee pull widths well under
one (d0 0.84, z0 0.61, phi 0.90, theta 0.84 on ``small`` Fatras events): the covariance
overstated the errors and the CKF's chi2 cut was looser than it said.

The model here replaces those variances by what the centroid's residual to the true crossing
point really is, measured on simulated events (``benchmarks/calibrate_errors.py``, training
seed): sigma / pitch per detector volume, local axis and cluster size along that axis, the
quantities the residual width depends on (pitch and thickness per volume, the crossing angle
through the cluster size). This is how ATLAS parametrises its pixel cluster errors too
(error versus cluster width and region). The constants live in ``measurement_errors.json``
beside this module, with the provenance of the run that made them.

Every consumer of measurement variances (``fitter.fit_prototracks``, ``ckf.find_tracks``)
reads them through ``measurement_variances``, selected by the config string
``measurement_errors``:

* ``"calibrated"``: the packaged calibration (default);
* ``"cluster"``: the clustering's own variances, unchanged;
* a path to a calibration JSON file written by ``benchmarks/calibrate_errors.py``.

A calibration holds for the detector and readout segmentation it was made on, whose name it
records: on any other detector (a toy geometry, TrackML's own segmentation) and for
measurements the table cannot describe (a volume it has no entry for, a cluster size < 1 as
from readers without cells) the measurements keep their stated variances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.errors import InputError

#: The packaged calibration (``benchmarks/calibrate_errors.py`` writes it).
CALIBRATION_FILE = Path(__file__).with_name("measurement_errors.json")
#: Format tag of calibration files.
FORMAT = "taas-measurement-errors-v1"
#: Named error sources; anything else is a path to a calibration file.
CALIBRATED, CLUSTER = "calibrated", "cluster"


@dataclass(frozen=True)
class MeasurementErrorModel:
    """sigma / pitch of a cluster centroid per volume, axis and cluster size.

    ``detector``: name of the detector (``Detector.name``) the calibration was made on;
    ``volumes``: its volume ids; ``sigma_u[i][s - 1]`` (``sigma_v``): the centroid's
    error along local u (v) in units of the module's pitch along that axis, for volume
    ``volumes[i]`` and a cluster ``s`` cells wide along that axis; the last entry also serves
    every wider cluster.
    """

    detector: str
    volumes: tuple[int, ...]
    sigma_u: tuple[tuple[float, ...], ...]
    sigma_v: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not self.detector:
            raise ValueError("detector must name the calibrated detector")
        if len(set(self.volumes)) != len(self.volumes) or not self.volumes:
            raise ValueError(f"volumes must be distinct and non-empty, got {self.volumes}")
        for name in ("sigma_u", "sigma_v"):
            table = getattr(self, name)
            if len(table) != len(self.volumes):
                raise ValueError(f"{name} needs one row per volume ({len(self.volumes)}), "
                                 f"got {len(table)}")
            for volume, row in zip(self.volumes, table, strict=True):
                values = np.asarray(row, float)
                if values.ndim != 1 or len(values) < 1 or not np.all(np.isfinite(values)) \
                        or not np.all(values > 0):
                    raise ValueError(f"{name} of volume {volume} must hold finite values > 0, "
                                     f"got {row}")

    def sigma_over_pitch(self, volume: np.ndarray, size: np.ndarray, axis: str,
                         ) -> np.ndarray:
        """sigma / pitch for each (volume, cluster size) along ``axis`` ("u" or "v"); NaN
        where the table has no entry (unknown volume, size < 1)."""
        table = self.sigma_u if axis == "u" else self.sigma_v
        volume = np.asarray(volume, np.int64)
        size = np.asarray(size, np.int64)
        out = np.full(len(volume), np.nan)
        for vol, row in zip(self.volumes, table, strict=True):
            sel = (volume == vol) & (size >= 1)
            out[sel] = np.asarray(row)[np.minimum(size[sel], len(row)) - 1]
        return out

    def variances(self, detector: Detector, measurements: Measurements) -> np.ndarray:
        """(n, 2) variances (mm^2) of local (u, v); the stated ones where the table has none or
        ``detector`` is not the calibrated one."""
        out = np.stack([measurements["var_u"], measurements["var_v"]], axis=1).astype(float)
        if detector.name != self.detector:
            return out
        rows = detector.index_of(measurements["module_key"], column="measurements.module_key")
        volume = detector.modules["volume_id"][rows]
        for k, axis in enumerate(("u", "v")):
            rel = self.sigma_over_pitch(volume, measurements[f"size_{axis}"], axis)
            known = np.isfinite(rel)
            pitch = detector.modules[f"pitch_{axis}"][rows]
            out[known, k] = (rel[known] * pitch[known]) ** 2
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any], *, source: str | Path | None = None,
                  ) -> MeasurementErrorModel:
        """The model of a calibration document (``to_json``'s layout)."""
        if doc.get("format") != FORMAT:
            raise InputError(f"not a measurement error calibration (format "
                             f"{doc.get('format')!r}, expected {FORMAT!r})", path=source)
        try:
            entries = sorted(doc["volumes"].items(), key=lambda kv: int(kv[0]))
            return cls(detector=str(doc["detector"]), volumes=tuple(int(v) for v, _ in entries),
                       sigma_u=tuple(tuple(float(x) for x in e["sigma_u"]) for _, e in entries),
                       sigma_v=tuple(tuple(float(x) for x in e["sigma_v"]) for _, e in entries))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad measurement error calibration: {exc}", path=source) from exc


@lru_cache(maxsize=8)
def load_error_model(path: str | Path = CALIBRATION_FILE) -> MeasurementErrorModel:
    """The model in a calibration file (cached per path)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read measurement error calibration: {exc}", path=path) from exc
    return MeasurementErrorModel.from_json(doc, source=path)


def check_error_source(errors: object) -> None:
    """Raise ``ValueError`` unless ``errors`` is ``"calibrated"``, ``"cluster"`` or a path to a
    ``.json`` file (a config's ``measurement_errors`` field, which may come from JSON)."""
    if not isinstance(errors, str) or (errors not in (CALIBRATED, CLUSTER)
                                       and not errors.endswith(".json")):
        raise ValueError(f"measurement_errors must be {CALIBRATED!r}, {CLUSTER!r} or a path to "
                         f"a calibration .json, got {errors!r}")


def measurement_variances(detector: Detector, measurements: Measurements,
                          errors: str = CALIBRATED) -> np.ndarray:
    """(n, 2) variances of local (u, v) that fits and track finding use; see the module doc."""
    if errors == CLUSTER:
        return np.stack([measurements["var_u"], measurements["var_v"]], axis=1).astype(float)
    model = load_error_model(CALIBRATION_FILE if errors == CALIBRATED else Path(errors))
    return model.variances(detector, measurements)
