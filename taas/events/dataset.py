"""Open a directory of events in any supported layout and iterate over its events.

Layouts, recognised by their files:
- ``parquet``:  eventNNNNNNNNN-{cells,hits,particles}.parquet + detector.parquet (taas' fast path)
- ``acts-csv``: eventNNNNNNNNN-{cells,measurements,...}.csv[.gz] + detector.parquet (ACTS / traccc)
- ``trackml``:  eventNNNNNNNNN-{hits,cells,particles,truth}.csv[.gz] + detectors.csv[.gz]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from taas.detector.detector import Detector
from taas.detector.field import SolenoidField, simulation_field
from taas.detector.material import MATERIAL_FILE, MaterialTable
from taas.detector.trackml import load_trackml_detector
from taas.errors import InputError
from taas.events.acts_csv import read_acts_event
from taas.events.event import Event, read_event_parquet
from taas.events.trackml import read_trackml_event

#: The file whose presence marks each layout, as a regex on file names.
_MARKERS = {
    "parquet": re.compile(r"^event(\d{9})-cells\.parquet$"),
    "acts-csv": re.compile(r"^event(\d{9})-measurements\.csv(\.gz)?$"),
    "trackml": re.compile(r"^event(\d{9})-truth\.csv(\.gz)?$"),
}
FORMATS = tuple(_MARKERS)


def load_detector(path: str | Path) -> Detector:
    """A detector from a saved parquet module table or a TrackML detectors.csv[.gz]."""
    path = Path(path)
    if not path.is_file():
        raise InputError("detector file does not exist", path=path)
    if path.name.endswith(".parquet"):
        return Detector.from_parquet(path)
    if ".csv" in path.suffixes:
        return load_trackml_detector(path)
    raise InputError("unknown detector format (want .parquet or TrackML detectors.csv[.gz])",
                     path=path)


def simulated_field(directory: Path) -> SolenoidField | None:
    """The non-uniform field ``directory``'s events were simulated in, from the ``field`` its
    ``dataset.json`` records (``taas.events.simulation``); None for a uniform field or no
    manifest (the track math then uses its configured uniform field)."""
    manifest = directory / "dataset.json"
    if not manifest.is_file():
        return None
    name = json.loads(manifest.read_text()).get("field", "uniform")
    try:
        field = simulation_field(name)
    except ValueError as exc:
        raise InputError(str(exc), path=manifest) from exc
    return field if isinstance(field, SolenoidField) else None


def _find_detector(directory: Path) -> Path:
    for name in ("detector.parquet", "detectors.csv", "detectors.csv.gz"):
        if (directory / name).is_file():
            return directory / name
    raise InputError("no detector.parquet or detectors.csv[.gz] here; pass the detector "
                     "file explicitly", path=directory)


@dataclass
class Dataset:
    """Events of one directory in one layout, sharing one detector (loaded once)."""

    directory: Path
    format: str
    event_ids: list[int]
    detector_path: Path

    @cached_property
    def detector(self) -> Detector:
        """The detector, with the material table saved beside it when there is one and the
        field its events were simulated in when their manifest names a non-uniform one."""
        detector = load_detector(self.detector_path)
        material = self.detector_path.parent / MATERIAL_FILE
        if material.is_file():
            detector.material = MaterialTable.from_parquet(material)
        field = simulated_field(self.directory)
        if field is not None:
            detector.field = field
        return detector

    def __len__(self) -> int:
        return len(self.event_ids)

    def read(self, event_id: int) -> Event:
        """One event; ``InputError`` names the file when it is malformed."""
        reader = {"parquet": read_event_parquet, "acts-csv": read_acts_event,
                  "trackml": read_trackml_event}[self.format]
        return reader(self.directory, event_id, self.detector)

    def __iter__(self) -> Iterator[Event]:
        for event_id in self.event_ids:
            yield self.read(event_id)


def open_dataset(directory: str | Path, detector: str | Path | None = None) -> Dataset:
    """Recognise the layout of ``directory`` (the first layout that has events wins)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("event directory does not exist", path=directory)
    names = [p.name for p in directory.iterdir()]
    for fmt, marker in _MARKERS.items():
        ids = sorted({int(m.group(1)) for n in names if (m := marker.match(n))})
        if ids:
            det = Path(detector) if detector is not None else _find_detector(directory)
            return Dataset(directory, fmt, ids, det)
    raise InputError(f"no events found (looked for {', '.join(FORMATS)} layouts)",
                     path=directory)
