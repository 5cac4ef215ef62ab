"""ACTS / traccc per-event CSV files <-> ``Event``.

Layout (one set per event, stem ``eventNNNNNNNNN``; ``.csv`` or ``.csv.gz``):

- ``-cells.csv``: geometry_id, measurement_id, channel0, channel1, timestamp, value
- ``-measurements.csv``: measurement_id, geometry_id, local_key, local0, local1, phi, theta,
  time, var_local0, var_local1, var_phi, var_theta, var_time, global_x, global_y, global_z
- ``-measurement-simhit-map.csv``: measurement_id, hit_id (row of hits.csv)
- ``-hits.csv``: particle id, geometry_id, tx, ty, tz, tt, tpx, tpy, tpz, te, deltapx, deltapy,
  deltapz, deltae, index
- ``-particles_simulated.csv`` (ACTS >= 48, Fatras) or ``-particles.csv``: particle id,
  particle_type, process, vx, vy, vz, vt, px, py, pz, m, q

Particle ids: traccc and ACTS < 48 write one ``particle_id`` column; ACTS 48 splits the barcode
into ``particle_id_pv, _sv, _part, _gen, _subpart``. Both are read; taas packs the parts into one
uint64 with the layout of ACTS' former ``Barcode`` value (``BARCODE_FIELDS``), so ids agree with
files from older ACTS and from traccc, and the writer emits the single traccc column.

Times: ACTS writes ``tt``/``vt`` in its native unit (mm, i.e. c*t); they are kept as written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from taas.detector.detector import Detector
from taas.edm import Cells, Particles, TruthHits
from taas.errors import InputError
from taas.events.checks import check_cells
from taas.events.event import Event, event_stem
from taas.io.atomic import atomic_write
from taas.io.csv_table import csv_header, read_csv_columns, write_csv_columns
from taas.io.paths import find_csv, has_csv

log = logging.getLogger(__name__)

#: Barcode parts as ACTS 48 names them, with their bit widths, most significant first
#: (vertex primary 12 | vertex secondary 12 | particle 16 | generation 8 | sub-particle 16).
BARCODE_FIELDS: tuple[tuple[str, int], ...] = (
    ("particle_id_pv", 12),
    ("particle_id_sv", 12),
    ("particle_id_part", 16),
    ("particle_id_gen", 8),
    ("particle_id_subpart", 16),
)

#: Measurement ``local_key`` for a 2D (loc0, loc1) measurement: bits 1 and 2. ACTS writes and
#: reads the key as one raw byte (a uint8 streamed as a character), so it is written as the
#: character chr(6): the text "6" would read back as 54, a 4D measurement in ACTS 48.
LOCAL_KEY_2D = chr(6)

#: Preference order of particle files: Fatras' list includes secondaries that own hits.
PARTICLE_FILES = ("particles_simulated", "particles")

MEASUREMENT_HEADER = (
    "measurement_id", "geometry_id", "local_key", "local0", "local1", "phi", "theta", "time",
    "var_local0", "var_local1", "var_phi", "var_theta", "var_time",
    "global_x", "global_y", "global_z",
)

_U8, _I8, _I4, _F8, _F4 = (np.dtype(t) for t in ("u8", "i8", "i4", "f8", "f4"))


def _shifts() -> list[tuple[str, int, int]]:
    shift, out = 64, []
    for name, width in BARCODE_FIELDS:
        shift -= width
        out.append((name, shift, (1 << width) - 1))
    return out


_BARCODE_SHIFTS = _shifts()


def pack_particle_id(parts: Mapping[str, npt.ArrayLike], *,
                     source: str | Path | None = None) -> np.ndarray:
    """Pack barcode parts (``BARCODE_FIELDS`` names) into uint64 ids; overflow raises."""
    out = np.zeros(np.shape(parts[BARCODE_FIELDS[0][0]]), dtype=np.uint64)
    for name, shift, mask in _BARCODE_SHIFTS:
        v = np.asarray(parts[name], dtype=np.int64)
        bad = (v < 0) | (v > mask)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"barcode part {int(v[row])} outside 0..{mask}", path=source,
                             row=row, column=name)
        out |= v.astype(np.uint64) << np.uint64(shift)
    return out


def unpack_particle_id(particle_id: npt.ArrayLike) -> dict[str, np.ndarray]:
    """Inverse of ``pack_particle_id`` (int64 arrays keyed by ``BARCODE_FIELDS`` names)."""
    pid = np.asarray(particle_id, dtype=np.uint64)
    return {name: ((pid >> np.uint64(shift)) & np.uint64(mask)).astype(np.int64)
            for name, shift, mask in _BARCODE_SHIFTS}


def _event_file(directory: Path, event_id: int, name: str) -> Path:
    """``eventNNNNNNNNN-<name>.csv`` or its ``.csv.gz``; a missing file raises ``InputError``."""
    return find_csv(directory, f"{event_stem(event_id)}-{name}")


def _particle_file(directory: Path, event_id: int) -> Path:
    for name in PARTICLE_FILES:
        try:
            return _event_file(directory, event_id, name)
        except InputError:
            continue
    return _event_file(directory, event_id, PARTICLE_FILES[-1])  # raises, naming the file


def _read_with_particle_id(path: Path, columns: dict[str, np.dtype],
                           optional: dict[str, np.dtype] | None = None) -> dict[str, np.ndarray]:
    """Read ``columns`` plus the particle id (single column or ACTS 48 barcode parts)."""
    header = csv_header(path)
    wanted = dict(columns)
    split = "particle_id" not in header and all(n in header for n, _ in BARCODE_FIELDS)
    if split:
        wanted.update({name: _I8 for name, _ in BARCODE_FIELDS})
    else:
        wanted["particle_id"] = _U8
    wanted.update({k: v for k, v in (optional or {}).items() if k in header})
    data = read_csv_columns(path, wanted)
    if split:
        parts = {name: data.pop(name) for name, _ in BARCODE_FIELDS}
        data["particle_id"] = pack_particle_id(parts, source=path)
    return data


def read_acts_event(directory: str | Path, event_id: int, detector: Detector) -> Event:
    """Read one event written by ACTS (geometric digitization) or by ``write_acts_event``.

    Truth hits are one row per measurement (``hit_id`` = measurement_id), with the true
    position and momentum of the first simulated hit mapped to it; measurements without a
    simulated hit get particle 0 and NaN truth. Particles come from ``particles_simulated``
    when present (initial state of every simulated particle, secondaries included; primaries
    carry the generator's kinematics), else from ``particles``.
    """
    directory = Path(directory)
    meas_path = _event_file(directory, event_id, "measurements")
    map_path = _event_file(directory, event_id, "measurement-simhit-map")
    hits_path = _event_file(directory, event_id, "hits")
    particles_path = _particle_file(directory, event_id)

    cells = _read_cells(directory, event_id, detector)

    m = read_csv_columns(meas_path, {"measurement_id": _I8, "geometry_id": _U8,
                                     "local0": _F8, "local1": _F8})
    detector.index_of(m["geometry_id"], source=meas_path, column="geometry_id")
    links = read_csv_columns(map_path, {"measurement_id": _I8, "hit_id": _I8})
    truth_cols = ("tx", "ty", "tz", "tt", "tpx", "tpy", "tpz")
    h = _read_with_particle_id(hits_path, dict.fromkeys(truth_cols, _F8), {"weight": _F8})
    simhit = _first_simhit(m["measurement_id"], links, n_hits=len(h["tx"]), source=map_path)

    truth = {name: _gather(h[name], simhit, np.nan) for name in truth_cols}
    pid = _gather(h["particle_id"], simhit, 0)
    weight = _gather(h["weight"], simhit, 0.0) if "weight" in h else np.zeros(len(simhit))
    hits = TruthHits(hit_id=m["measurement_id"], particle_id=pid,
                     module_key=m["geometry_id"], weight=weight, ref_u=m["local0"],
                     ref_v=m["local1"], **truth)
    particles = _read_particles(particles_path, hits["particle_id"])
    return Event(event_id, cells=cells, hits=hits, particles=particles, detector=detector,
                 source="acts-csv")


def _read_cells(directory: Path, event_id: int, detector: Detector) -> Cells:
    """The event's cells; none when it has no cells file (an event given as space points:
    the measurements, which the pipelines then start from, ``taas.reco.hit_spacepoints``)."""
    if not has_csv(directory, f"{event_stem(event_id)}-cells"):
        return Cells.empty()
    path = _event_file(directory, event_id, "cells")
    c = read_csv_columns(path, {"geometry_id": _U8, "measurement_id": _I8, "channel0": _I4,
                                "channel1": _I4, "timestamp": _F4, "value": _F4})
    check_cells(detector, c["geometry_id"], c["channel0"], c["channel1"], path=path,
                key_column="geometry_id", channel_columns=("channel0", "channel1"))
    return Cells(module_key=c["geometry_id"], ch0=c["channel0"], ch1=c["channel1"],
                 value=c["value"], timestamp=c["timestamp"], hit_id=c["measurement_id"])


def _gather(values: np.ndarray, index: np.ndarray, fill: float | int) -> np.ndarray:
    """``values[index]`` with ``fill`` where ``index`` is -1."""
    out = np.full(len(index), fill, dtype=values.dtype)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def _first_simhit(measurement_id: np.ndarray, links: dict[str, np.ndarray], *, n_hits: int,
                  source: Path) -> np.ndarray:
    """Row in hits.csv of the first simulated hit of each measurement (-1 when none)."""
    bad = (links["hit_id"] < 0) | (links["hit_id"] >= n_hits)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"hit_id {int(links['hit_id'][row])} is not a row of hits.csv "
                         f"({n_hits} rows)", path=source, row=row, column="hit_id")
    keys, first = np.unique(links["measurement_id"], return_index=True)
    if len(keys) == 0:
        return np.full(len(measurement_id), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, measurement_id), len(keys) - 1)
    found = keys[pos] == measurement_id
    return np.where(found, links["hit_id"][first[pos]], -1)


def _read_particles(path: Path, hit_particle_id: np.ndarray) -> Particles:
    cols = {"particle_type": _I4, "vx": _F8, "vy": _F8, "vz": _F8, "vt": _F8, "px": _F8,
            "py": _F8, "pz": _F8, "m": _F8, "q": _F4}
    p = _read_with_particle_id(path, cols, {"vertex_id": _I8, "primary": np.dtype(bool)})
    pid = p.pop("particle_id")
    order = np.sort(pid)
    dup = order[1:] == order[:-1]
    if dup.any():
        value = order[1:][dup][0]
        row = int(np.flatnonzero(pid == value)[1])
        raise InputError(f"duplicate particle id {int(value)}", path=path, row=row,
                         column="particle_id")
    parts = unpack_particle_id(pid)
    vertex_id = p.pop("vertex_id", parts["particle_id_pv"])
    primary = p.pop("primary", parts["particle_id_sv"] == 0)
    ids, counts = np.unique(hit_particle_id, return_counts=True)
    nhits = np.zeros(len(pid), dtype=np.int32)
    if len(ids):
        pos = np.minimum(np.searchsorted(ids, pid), len(ids) - 1)
        nhits = np.where(ids[pos] == pid, counts[pos], 0).astype(np.int32)
    return Particles(particle_id=pid, vertex_id=vertex_id, primary=primary,
                     nhits=nhits, **p)


def write_acts_event(event: Event, directory: str | Path) -> list[Path]:
    """Write the event in the ACTS / traccc CSV layout; returns the files written.

    Reading the result with ``read_acts_event`` gives back an identical event (floats are
    written in shortest round-trip form). One simulated hit is written per truth hit (none for
    hits without truth); ``te`` uses the particle's mass, the ``delta*`` columns are 0 and
    ``index`` counts a particle's hits in time order. ``var_local*`` are pitch^2/12. Extra
    columns: hits ``weight``, particles ``vertex_id`` and ``primary``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = event_stem(event.event_id)
    det = event.detector
    cells, hits, particles = event.cells, event.hits, event.particles
    tables: dict[str, dict[str, np.ndarray]] = {}

    tables["cells"] = {"geometry_id": cells["module_key"], "measurement_id": cells["hit_id"],
                       "channel0": cells["ch0"], "channel1": cells["ch1"],
                       "timestamp": cells["timestamp"], "value": cells["value"]}

    rows = det.index_of(hits["module_key"], column="module_key")
    n = len(hits)
    zeros = np.zeros(n)
    xyz = det.local_to_global(rows, hits["ref_u"], hits["ref_v"])
    mod = det.modules
    tables["measurements"] = dict(zip(MEASUREMENT_HEADER, (
        hits["hit_id"], hits["module_key"], np.full(n, LOCAL_KEY_2D, dtype=object),
        hits["ref_u"], hits["ref_v"], zeros, zeros, zeros,
        mod["pitch_u"][rows] ** 2 / 12, mod["pitch_v"][rows] ** 2 / 12, zeros, zeros, zeros,
        xyz[:, 0], xyz[:, 1], xyz[:, 2]), strict=True))

    has_truth = np.isfinite(hits["tx"])
    sim = np.flatnonzero(has_truth)
    tables["measurement-simhit-map"] = {"measurement_id": hits["hit_id"][sim],
                                        "hit_id": np.arange(len(sim), dtype=np.int64)}
    tables["hits"] = _simhit_columns(hits, particles, sim)
    tables["particles"] = {
        "particle_id": particles["particle_id"], "particle_type": particles["particle_type"],
        "process": np.zeros(len(particles), np.int32),
        **{k: particles[k] for k in ("vx", "vy", "vz", "vt", "px", "py", "pz", "m", "q")},
        "vertex_id": particles["vertex_id"], "primary": particles["primary"],
    }

    written = []
    for name, columns in tables.items():
        path = directory / f"{stem}-{name}.csv"
        atomic_write(path, partial(write_csv_columns, columns=columns))
        written.append(path)
    return written


def _simhit_columns(hits: TruthHits, particles: Particles,
                    sim: np.ndarray) -> dict[str, np.ndarray]:
    """hits.csv columns for the truth hits ``sim``."""
    pid = hits["particle_id"][sim]
    p = np.stack([hits["tpx"][sim], hits["tpy"][sim], hits["tpz"][sim]], axis=1)
    order = np.argsort(particles["particle_id"], kind="stable")
    known = particles["particle_id"][order]
    if len(known):
        pos = np.minimum(np.searchsorted(known, pid), len(known) - 1)
        mass = np.where(known[pos] == pid, particles["m"][order][pos], 0.0)
    else:
        mass = np.zeros(len(pid))
    te = np.sqrt(np.einsum("ij,ij->i", p, p) + mass**2)
    # index: position of each hit along its particle's trajectory (time order)
    by_time = np.lexsort((hits["tt"][sim], pid))
    sorted_pid = pid[by_time]
    starts = np.r_[0, np.flatnonzero(sorted_pid[1:] != sorted_pid[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(sorted_pid)]))
    index = np.empty(len(sim), dtype=np.int64)
    index[by_time] = np.arange(len(sim)) - group_start
    zeros = np.zeros(len(sim))
    return {
        "particle_id": pid, "geometry_id": hits["module_key"][sim],
        **{k: hits[k][sim] for k in ("tx", "ty", "tz", "tt", "tpx", "tpy", "tpz")},
        "te": te, "deltapx": zeros, "deltapy": zeros, "deltapz": zeros, "deltae": zeros,
        "index": index, "weight": hits["weight"][sim],
    }
