"""``Event``: cells + detector + truth, whatever the source, and its parquet fast path."""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taas.detector.detector import Detector
from taas.edm import Cells, Particles, Table, TruthHits
from taas.errors import InputError
from taas.io.atomic import atomic_write

#: Tables an event persists, by file suffix.
EVENT_TABLES: dict[str, type[Table]] = {"cells": Cells, "hits": TruthHits, "particles": Particles}

#: Columns whose values repeat across rows: the only ones worth dictionary-encoding.
DICTIONARY_COLUMNS = ("module_key", "particle_id")


@dataclass
class Event:
    """One collision event: fired cells on a detector, with the truth that produced them."""

    event_id: int
    cells: Cells
    hits: TruthHits
    particles: Particles
    detector: Detector
    source: str = "unknown"

    def sizes(self) -> dict[str, int]:
        """Counts users quote with every figure."""
        return {
            "cells": len(self.cells),
            "hits": len(self.hits),
            "particles": len(self.particles),
            "modules_hit": len(np.unique(self.cells["module_key"])),
        }

    def equals(self, other: Event) -> bool:
        """Same id and identical tables (the detector is compared by module table)."""
        return (
            self.event_id == other.event_id
            and self.cells.equals(other.cells)
            and self.hits.equals(other.hits)
            and self.particles.equals(other.particles)
            and self.detector.modules.equals(other.detector.modules)
        )


def event_stem(event_id: int) -> str:
    """File stem shared by the ACTS/traccc and TrackML layouts: ``event000000042``."""
    return f"event{event_id:09d}"


def write_event_parquet(event: Event, directory: str | Path) -> list[Path]:
    """Write the event's tables as ``eventNNNNNNNNN-<table>.parquet`` (detector not included).

    Uncompressed on purpose: this is the local fast path, and decoding snappy cost half of the
    read time of a ``large`` event for 12% less disk; dictionary encoding only where values
    repeat (module and particle ids) cut another quarter (benchmarks/io_and_simulation.py).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in EVENT_TABLES:
        table: pa.Table = getattr(event, suffix).to_arrow()
        table = table.replace_schema_metadata({"taas.source": event.source})
        path = directory / f"{event_stem(event.event_id)}-{suffix}.parquet"
        keys = [c for c in DICTIONARY_COLUMNS if c in table.column_names]
        atomic_write(path, functools.partial(_write_parquet, table, keys))
        written.append(path)
    return written


def _write_parquet(table: pa.Table, dictionary_columns: list[str], path: Path) -> None:
    pq.write_table(table, str(path), compression="none", use_dictionary=dictionary_columns)


def _read_table(path: Path, kind: type[Table]) -> tuple[Table, str]:
    """One event table and the source recorded beside it."""
    try:
        arrow = pq.read_table(str(path), memory_map=True)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read parquet: {exc}", path=path) from exc
    source = (arrow.schema.metadata or {}).get(b"taas.source", b"unknown").decode()
    try:
        return kind.from_arrow(arrow), source
    except InputError as exc:
        raise InputError(exc.reason, path=path) from exc


def read_event_parquet(directory: str | Path, event_id: int, detector: Detector) -> Event:
    """Inverse of ``write_event_parquet``.

    The three tables are read concurrently (Arrow releases the GIL): the read time of a
    ``large`` event becomes that of its largest table instead of the sum.
    """
    paths = {s: Path(directory) / f"{event_stem(event_id)}-{s}.parquet" for s in EVENT_TABLES}
    with ThreadPoolExecutor(max_workers=len(EVENT_TABLES)) as pool:
        futures = {s: pool.submit(_read_table, paths[s], kind)
                   for s, kind in EVENT_TABLES.items()}
        results = {s: f.result() for s, f in futures.items()}
    tables = {s: table for s, (table, _) in results.items()}
    return Event(event_id, detector=detector, source=results["cells"][1],
                 cells=cast(Cells, tables["cells"]), hits=cast(TruthHits, tables["hits"]),
                 particles=cast(Particles, tables["particles"]))


def write_manifest(directory: str | Path, info: dict[str, Any]) -> None:
    """Describe a dataset directory (source, preset, seed, sizes) in ``dataset.json``."""
    path = Path(directory) / "dataset.json"
    atomic_write(path, lambda p: p.write_text(json.dumps(info, indent=2, sort_keys=True)))
