"""Write taas events as the input a traccc build reads, so real traccc can run on taas' events.

traccc's examples (``traccc_seq_example``, ``traccc_seeding_example``, ``traccc_throughput_st``
and their ``_cuda`` twins) read, under the data directory ``TRACCC_TEST_DATA_DIR``:

* the detector geometry, for the TrackML detector ``tml_detector/trackml-detector.csv``: one row
  per surface in the layout of ACTS' ``CsvTrackingGeometryWriter`` (``detectors.csv``:
  geometry_id, volume/boundary/layer/module/extra ids, centre ``cx, cy, cz``, rotation
  ``rot_xu .. rot_zw``, ``bounds_type`` and ``bound_param0..6``, ``module_t``, ``pitch_u``,
  ``pitch_v``); traccc's surface reader takes the id, centre and rotation;
* the digitization configuration, ``tml_detector/default-geometric-config-generic.json``: ACTS'
  ``acts-geometry-hierarchy-map`` of ``digitization-configuration`` entries, of which traccc
  reads each entry's ``geometric.segmentation`` (the channel grid that turns ``channel0/1``
  into local positions);
* per event ``eventNNNNNNNNN-cells.csv`` (``geometry_id, measurement_id, channel0, channel1,
  timestamp, value``) and, for its truth performance, ``-measurements.csv``,
  ``-measurement-simhit-map.csv``, ``-hits.csv`` and ``-particles.csv``.

The ACTS Generic detector taas simulates on is the TrackML detector (same 18728 modules,
centres and thicknesses), and the grid in the digitization file is taas' own segmentation
(``taas.detector.acts_generic``), so cells written here decode to the same local positions in
traccc as in taas. The event files are ACTS / traccc CSV as ``taas.events.acts_csv`` writes
them; reading them back with taas' reader gives the same cells and truth (tested).

``export_events`` writes one such data directory and returns a ``TracccExport`` that knows the
command line and environment to run a traccc example on it.

Version note: traccc builds from 2023-2024 read the TrackML CSV geometry (option
``--use-detray-detector=false``); later ones only take detray JSON geometries, which this
exporter does not write (``command`` asks for the CSV geometry; such a build refuses it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taas.detector.acts_generic import digitization_config_json
from taas.detector.detector import Detector
from taas.detector.modules import ROTATION_COLUMNS
from taas.errors import InputError
from taas.events.acts_csv import write_acts_event
from taas.events.dataset import open_dataset
from taas.io.atomic import atomic_write
from taas.io.csv_table import write_csv_columns

log = logging.getLogger(__name__)

#: Where traccc's examples look for the TrackML detector, relative to the data directory.
DETECTOR_FILE = "tml_detector/trackml-detector.csv"
DIGITIZATION_FILE = "tml_detector/default-geometric-config-generic.json"
#: ACTS ``SurfaceBounds`` type codes of the module shapes.
BOUNDS_RECTANGLE, BOUNDS_TRAPEZOID = 6, 7
#: Columns of ACTS' ``CsvTrackingGeometryWriter`` surface file, in its order.
GEOMETRY_HEADER = (
    "geometry_id", "volume_id", "boundary_id", "layer_id", "module_id", "extra_id",
    "cx", "cy", "cz", *ROTATION_COLUMNS, "bounds_type",
    *(f"bound_param{i}" for i in range(7)), "module_t", "pitch_u", "pitch_v",
)


@dataclass(frozen=True)
class TracccExport:
    """A data directory written for traccc and how to run traccc's examples on it.

    ``data_dir``: the directory to give traccc as ``TRACCC_TEST_DATA_DIR``; ``events_dir``:
    the events' directory relative to it; ``event_ids``: the exported events (consecutive).
    """

    data_dir: Path
    events_dir: str
    event_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        ids = self.event_ids
        if not ids or list(ids) != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError(f"event_ids must be consecutive and non-empty, got {ids}")

    def command(self, executable: str, *extra: str) -> list[str]:
        """Command line of a traccc example (``traccc_seq_example``, ...) on these events."""
        return [executable, f"--detector-file={DETECTOR_FILE}",
                f"--digitization-file={DIGITIZATION_FILE}", "--use-detray-detector=false",
                f"--input-directory={self.events_dir}/", "--input-data-format=csv",
                f"--input-events={len(self.event_ids)}", f"--input-skip={self.event_ids[0]}",
                *extra]

    def environment(self) -> dict[str, str]:
        """The environment variable by which traccc resolves the relative paths above."""
        return {"TRACCC_TEST_DATA_DIR": str(self.data_dir)}


def geometry_columns(detector: Detector) -> dict[str, np.ndarray]:
    """Surface rows of every module in ACTS' ``CsvTrackingGeometryWriter`` layout.

    Bounds as ACTS writes them: rectangles (``min_hu == max_hu``) as (min x, min y, max x,
    max y), trapezoids as (half x at -y, half x at +y, half y, rotation 0); unused parameters
    -1. ``pitch_u``/``pitch_v`` carry taas' segmentation (ACTS' writer leaves them -1).
    """
    m = detector.modules
    n = len(detector)
    rect = np.isclose(m["min_hu"], m["max_hu"], rtol=0.0, atol=1e-9)
    params = np.full((n, 7), -1.0)
    params[rect, 0], params[rect, 1] = -m["max_hu"][rect], -m["hv"][rect]
    params[rect, 2], params[rect, 3] = m["max_hu"][rect], m["hv"][rect]
    params[~rect, 0], params[~rect, 1] = m["min_hu"][~rect], m["max_hu"][~rect]
    params[~rect, 2], params[~rect, 3] = m["hv"][~rect], 0.0
    zeros = np.zeros(n, np.int64)
    columns: dict[str, np.ndarray] = {
        "geometry_id": m["module_key"], "volume_id": m["volume_id"], "boundary_id": zeros,
        "layer_id": m["layer_id"], "module_id": m["module_id"], "extra_id": zeros,
        "cx": m["cx"], "cy": m["cy"], "cz": m["cz"],
        **{name: m[name] for name in ROTATION_COLUMNS},
        "bounds_type": np.where(rect, BOUNDS_RECTANGLE, BOUNDS_TRAPEZOID).astype(np.int64),
        **{f"bound_param{i}": params[:, i] for i in range(7)},
        "module_t": m["thickness"], "pitch_u": m["pitch_u"], "pitch_v": m["pitch_v"],
    }
    return {name: np.asarray(columns[name]) for name in GEOMETRY_HEADER}


def write_detector_files(detector: Detector, data_dir: Path) -> None:
    """The geometry and digitization files traccc's TrackML examples read."""
    geometry = data_dir / DETECTOR_FILE
    geometry.parent.mkdir(parents=True, exist_ok=True)
    columns = geometry_columns(detector)
    atomic_write(geometry, lambda p: write_csv_columns(p, columns))
    text = digitization_config_json(detector)
    json.loads(text)  # a malformed document must fail here, not inside a traccc run
    atomic_write(data_dir / DIGITIZATION_FILE, lambda p: p.write_text(text))


def export_events(events: str | Path, data_dir: str | Path, *,
                  event_ids: Sequence[int] | None = None, events_dir: str = "taas_events",
                  detector: str | Path | None = None) -> TracccExport:
    """Write the events of dataset ``events`` (default: all; consecutive ids) and the detector
    files into the traccc data directory ``data_dir``; events go to ``data_dir/events_dir``."""
    dataset = open_dataset(events, detector=detector)
    ids = tuple(dataset.event_ids if event_ids is None else sorted(set(event_ids)))
    missing = sorted(set(ids) - set(dataset.event_ids))
    if missing:
        raise InputError(f"events {missing} are not in the dataset", path=events)
    if not ids or list(ids) != list(range(ids[0], ids[0] + len(ids))):
        raise InputError(f"traccc reads a consecutive range of events; got {list(ids)}",
                         path=events)
    if Path(events_dir).is_absolute() or ".." in Path(events_dir).parts:
        raise InputError(f"events_dir must be a relative path inside data_dir, got "
                         f"{events_dir!r}")
    data_dir = Path(data_dir)
    write_detector_files(dataset.detector, data_dir)
    for event_id in ids:
        write_acts_event(dataset.read(event_id), data_dir / events_dir)
    log.info("exported %d events for traccc into %s", len(ids), data_dir)
    return TracccExport(data_dir=data_dir, events_dir=events_dir, event_ids=ids)
