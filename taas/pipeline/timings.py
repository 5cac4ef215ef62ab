"""The per-stage timing table ``taas reconstruct`` writes, read back in one place.

``timings.csv`` has one row per (event, stage): event_id, stage, backend, device, seconds, and
the stage's host <-> device traffic on that event (``taas.stages.transfers``): transfer_kind
(``copy``, ``handover`` -- a numpy <-> torch crossing on the CPU device, no bytes copied --,
``not counted`` for a stage off the host backend that does not count, ``none`` for a stage
that crossed nothing), tensors and bytes each way, and the seconds spent in the crossings.
Reports, summaries and benchmarks all read it through ``read_timings`` so that a column change
touches one module; files written before the traffic columns read as ``transfer_kind`` "".
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

from taas.stages.transfers import NOT_COUNTED, StageTraffic

COUNT_FIELDS = ("to_device", "to_device_bytes", "to_host", "to_host_bytes")
TRANSFER_FIELDS = ("transfer_kind", *COUNT_FIELDS, "transfer_seconds")
FIELDS = ("event_id", "stage", "backend", "device", "seconds", *TRANSFER_FIELDS)
FILE_NAME = "timings.csv"


def transfer_fields(traffic: StageTraffic, counted: bool = True) -> dict[str, Any]:
    """The traffic columns of one (event, stage) row: counts summed over kinds (handovers
    carry no bytes), the kinds joined with "+"."""
    kinds = sorted(traffic.by_kind)
    row: dict[str, Any] = {"transfer_kind": "+".join(kinds) if kinds else (
        "none" if counted else NOT_COUNTED)}
    for name in COUNT_FIELDS:
        row[name] = sum(getattr(t, name) for t in traffic.by_kind.values())
    row["transfer_seconds"] = sum(t.seconds for t in traffic.by_kind.values())
    return row


def write_timings(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)


def read_timings(reco_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``reco_dir/timings.csv`` with ``event_id`` int, ``seconds`` float and the
    traffic columns typed (ints, ``transfer_seconds`` float; absent in older files: kind "")."""
    with (Path(reco_dir) / FILE_NAME).open() as fh:
        return [_typed(row) for row in csv.DictReader(fh)]


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {**row, "event_id": int(row["event_id"]),
                           "seconds": float(row["seconds"])}
    out["transfer_kind"] = row.get("transfer_kind") or ""
    for name in COUNT_FIELDS:
        out[name] = int(row.get(name) or 0)
    out["transfer_seconds"] = float(row.get("transfer_seconds") or 0.0)
    return out


def copies_by_stage(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Host <-> device traffic per event of each (stage, backend, device) that has any kind
    recorded (host stages that crossed nothing are left out), in pipeline order: the kind,
    the median over events of tensors and bytes each way and of the seconds in crossings."""
    grouped: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("transfer_kind") and not (row["transfer_kind"] == "none"
                                             and row["backend"] == "cpu"):
            grouped[(row["stage"], row["backend"], row["device"])].append(row)
    out = []
    for (stage, backend, device), group in grouped.items():
        entry: dict[str, Any] = {"stage": stage, "backend": backend, "device": device,
                                 "kind": "/".join(dict.fromkeys(r["transfer_kind"]
                                                                for r in group)),
                                 "events": len(group)}
        for name in (*COUNT_FIELDS, "transfer_seconds"):
            entry[name] = float(np.median([r[name] for r in group]))
        out.append(entry)
    return out


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
