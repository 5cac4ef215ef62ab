"""The per-stage timing table ``taas reconstruct`` writes, read back in one place.

``timings.csv`` has one row per (event, stage): event_id, stage, backend, device, seconds.
Reports, summaries and benchmarks all read it through ``read_timings`` so that a column change
touches one module.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIELDS = ("event_id", "stage", "backend", "device", "seconds")
FILE_NAME = "timings.csv"


def write_timings(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)


def read_timings(reco_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``reco_dir/timings.csv`` with ``event_id`` int and ``seconds`` float."""
    with (Path(reco_dir) / FILE_NAME).open() as fh:
        return [{**row, "event_id": int(row["event_id"]), "seconds": float(row["seconds"])}
                for row in csv.DictReader(fh)]


def seconds_by_stage(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], list[float]]:
    """Seconds per event of each (stage, backend, device), in pipeline order."""
    out: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        out[(row["stage"], row["backend"], row["device"])].append(row["seconds"])
    return dict(out)


def median_stage_seconds(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median over events of each stage's seconds, keyed by stage name."""
    return {stage: float(np.median(v)) for (stage, _, _), v in seconds_by_stage(rows).items()}


def seconds_per_event(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Total pipeline seconds of each event."""
    totals: dict[int, float] = defaultdict(float)
    for row in rows:
        totals[row["event_id"]] += row["seconds"]
    return list(totals.values())


def loglog_slopes(sizes: Sequence[float], stage_seconds: Sequence[dict[str, float]],
                  ) -> dict[str, float]:
    """Slope of log(time) against log(size) per stage (1 = linear scaling)."""
    x = np.log(np.asarray(sizes, float))
    return {stage: float(np.polyfit(x, np.log([s[stage] for s in stage_seconds]), 1)[0])
            for stage in stage_seconds[0]}


def prefault_memory(gib: float) -> float:
    """Touch ``gib`` GiB of fresh memory once, one GiB at a time, and free it; returns the
    seconds it took.

    Why: on a virtual machine whose guest memory is backed lazily by the host (this project's
    Firecracker machines), the first touch of a never-used page costs about 2.5 s per GiB, 40x
    a later touch. A large event's stages allocate a few GiB, so their first timings would
    measure the host rather than the code (one ``large`` GNN call: 10.8 s fresh, 7.1 s after
    this). Scaling benchmarks call it before timing so every preset sees memory the guest
    already holds; on bare metal it costs a fraction of a second and changes nothing.
    """
    start = time.perf_counter()
    block = 1 << 30
    for _ in range(math.ceil(gib)):
        buf = np.empty(block, dtype=np.uint8)
        buf[::4096] = 1  # one write per 4 KiB page faults the whole GiB in
        del buf
    return time.perf_counter() - start
