"""Read TrackML challenge events (hits, cells, particles, truth; .csv or .csv.gz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taas.detector.detector import Detector
from taas.detector.trackml import trackml_module_keys
from taas.edm import Cells, Particles, TruthHits
from taas.edm.lookup import find_rows
from taas.errors import InputError
from taas.events.checks import check_cells
from taas.events.event import Event, event_stem
from taas.io.csv_table import csv_header, read_csv_columns
from taas.io.paths import find_csv, has_csv

HIT_COLUMNS = {"hit_id": "i8", "x": "f8", "y": "f8", "z": "f8",
               "volume_id": "i4", "layer_id": "i4", "module_id": "i4"}
CELL_COLUMNS = {"hit_id": "i8", "ch0": "i4", "ch1": "i4", "value": "f4"}
PARTICLE_COLUMNS = {"particle_id": "u8", "vx": "f8", "vy": "f8", "vz": "f8",
                    "px": "f8", "py": "f8", "pz": "f8", "q": "f4", "nhits": "i4"}
TRUTH_COLUMNS = {"hit_id": "i8", "particle_id": "u8", "tx": "f8", "ty": "f8", "tz": "f8",
                 "tpx": "f8", "tpy": "f8", "tpz": "f8", "weight": "f8"}

#: Masses (GeV) of the particle types TrackML generated, by |PDG id| (PDG 2024 values).
PDG_MASS_GEV = {11: 0.000510999, 13: 0.105658, 211: 0.139570, 321: 0.493677, 2212: 0.938272}

#: A TrackML particle counts as primary when its vertex lies this close to the beam line (mm);
#: TrackML files carry no primary flag.
PRIMARY_MAX_VERTEX_R_MM = 1.0


def _rows_of(ids: np.ndarray, known: np.ndarray, *, path: Path, column: str,
             what: str) -> np.ndarray:
    """Row in ``known`` of each id; raise naming the first row whose id is not there."""
    rows, ok = find_rows(known, ids)
    if not np.all(ok):
        row = int(np.flatnonzero(~ok)[0])
        raise InputError(f"{column} {ids[row]} has no entry in the {what} file "
                         f"({int((~ok).sum())} rows affected)", path=path, row=row, column=column)
    return rows


def read_trackml_event(directory: str | Path, event_id: int, detector: Detector) -> Event:
    """One TrackML event as an ``Event`` (source ``trackml``).

    Cells take their module from their hit; hits.csv positions become the reference local
    (u, v) against which clustering is validated; the module of every hit must be a detector
    module and every cell channel must lie in its module's readout grid. Without a cells file
    the event has no cells: it is then given as space points (hits.csv positions), which the
    pipelines start from (``taas.reco.hit_spacepoints``).
    """
    directory = Path(directory)
    stem = event_stem(event_id)
    paths = {name: find_csv(directory, f"{stem}-{name}")
             for name in ("hits", "particles", "truth")}
    hits = read_csv_columns(paths["hits"], HIT_COLUMNS)
    if has_csv(directory, f"{stem}-cells"):
        paths["cells"] = find_csv(directory, f"{stem}-cells")
        cells = read_csv_columns(paths["cells"], CELL_COLUMNS)
    else:
        cells = {name: np.zeros(0, dtype) for name, dtype in CELL_COLUMNS.items()}
    # particle_type is absent from some TrackML releases (the training set has it)
    particle_columns = dict(PARTICLE_COLUMNS)
    if "particle_type" in csv_header(paths["particles"]):
        particle_columns["particle_type"] = "i4"
    particles = read_csv_columns(paths["particles"], particle_columns)
    truth = read_csv_columns(paths["truth"], TRUTH_COLUMNS)

    hit_keys = trackml_module_keys(hits["volume_id"], hits["layer_id"], hits["module_id"])
    hit_rows = detector.index_of(hit_keys, source=paths["hits"], column="module_id")

    truth_pos = _rows_of(truth["hit_id"], hits["hit_id"], path=paths["truth"], column="hit_id",
                         what="hits")
    cell_pos = np.zeros(0, np.int64)
    if "cells" in paths:
        cell_pos = _rows_of(cells["hit_id"], hits["hit_id"], path=paths["cells"],
                            column="hit_id", what="hits")
        check_cells(detector, hit_keys[cell_pos], cells["ch0"], cells["ch1"],
                    path=paths["cells"], key_column="hit_id")

    noise = truth["particle_id"] == 0
    _rows_of(truth["particle_id"][~noise], particles["particle_id"], path=paths["truth"],
               column="particle_id", what="particles")

    local = detector.global_to_local(hit_rows, np.stack([hits["x"], hits["y"], hits["z"]], 1))
    n = len(truth["hit_id"])
    truth_hits = TruthHits(
        hit_id=truth["hit_id"], particle_id=truth["particle_id"],
        module_key=hit_keys[truth_pos],
        tx=truth["tx"], ty=truth["ty"], tz=truth["tz"], tt=np.zeros(n),
        tpx=truth["tpx"], tpy=truth["tpy"], tpz=truth["tpz"], weight=truth["weight"],
        ref_u=local[truth_pos, 0], ref_v=local[truth_pos, 1],
    )
    event_cells = Cells(module_key=hit_keys[cell_pos], ch0=cells["ch0"], ch1=cells["ch1"],
                        value=cells["value"], timestamp=np.zeros(len(cells["hit_id"])),
                        hit_id=cells["hit_id"])
    return Event(event_id, event_cells, truth_hits,
                 _particles(particles, truth["particle_id"]), detector, source="trackml")


def _particles(p: dict[str, np.ndarray], hit_particle_ids: np.ndarray) -> Particles:
    """Particles with vertex index, primary flag, mass from the PDG id and nhits from truth."""
    n = len(p["particle_id"])
    pdg = p.get("particle_type", np.zeros(n, np.int32))
    mass = np.array([PDG_MASS_GEV.get(abs(int(t)), np.nan) for t in np.unique(pdg)])
    mass_of = dict(zip(np.unique(pdg).tolist(), mass.tolist(), strict=True))
    vertex = np.stack([p["vx"], p["vy"], p["vz"]], axis=1)
    _, vertex_id = np.unique(vertex, axis=0, return_inverse=True)
    ids, counts = np.unique(hit_particle_ids, return_counts=True)
    nhits = np.zeros(n, np.int32)
    rows, found = find_rows(ids, p["particle_id"])
    nhits[found] = counts[rows[found]]
    return Particles(
        particle_id=p["particle_id"], particle_type=pdg, q=p["q"],
        vx=p["vx"], vy=p["vy"], vz=p["vz"], vt=np.zeros(n),
        px=p["px"], py=p["py"], pz=p["pz"],
        m=np.vectorize(mass_of.__getitem__, otypes=[float])(pdg) if n else np.zeros(0),
        vertex_id=vertex_id.reshape(-1),
        primary=np.hypot(p["vx"], p["vy"]) < PRIMARY_MAX_VERTEX_R_MM,
        nhits=nhits,
    )
