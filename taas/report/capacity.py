"""Event-filter capacity planning: how many devices each pipeline needs at ATLAS' rates.

The ATLAS event filter for the HL-LHC must track every event that passes the first-level
trigger: full-scan tracking at 150 kHz, and regional (region-of-interest, RoI) tracking at 1 MHz,
on ITk events of about 300k space points. A report measures each pipeline on its own events;
this module turns those measurements into devices needed, in two steps, each labelled:

* **at the measured size**: devices = rate x (seconds per event on one device), with the time
  per event measured in this run (direct, one process, events one after another);
* **extrapolated** to ``spacepoints`` per event, stage by stage: t(N) = t(N0) (N / N0)^s with
  each stage's log-log slope ``s`` measured by the scaling benchmarks
  (``benchmarks/results/cpu_chain_scaling.json``, ``gnn_scaling.json``); a stage without a
  measured slope is scaled linearly, and the table says which slopes were used.

RoI tracking reconstructs only the space points inside its regions: ``roi_fraction`` of the
event (default 0.05: about ten regions of 0.4 x 0.4 in eta x phi at |eta| < 2.5 cover 3%, and
their z extent and the regions' overlap with jets add to it; a guess to be replaced by the
trigger menu's numbers, hence configurable), timed with the same per-stage extrapolation.

What a "device" is follows from where the stages ran: a CPU core when every stage reported a
CPU device (taas' CPU stages are single-threaded), a GPU when the accelerator stages reported
CUDA (one process per GPU, its CPU stages beside it), and nothing is planned for a pipeline whose
FPGA stages were emulated (C simulation times say nothing about hardware; the FPGA hardware
model's figures belong to ``benchmarks/results/fpga_hardware_model.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taas.stages.devices import runs_on_gpu

log = logging.getLogger(__name__)

_SLOPE_KEYS = ("loglog_slope_vs_measurements", "loglog_slope_vs_spacepoints")


@dataclass(frozen=True)
class CapacityConfig:
    """Trigger rates and event size the plan is made for (ATLAS ITk event filter defaults)."""

    full_scan_hz: float = 150e3
    roi_hz: float = 1e6
    roi_fraction: float = 0.05
    spacepoints: float = 300e3

    def __post_init__(self) -> None:
        for name in ("full_scan_hz", "roi_hz", "spacepoints"):
            if not getattr(self, name) > 0:
                raise ValueError(f"capacity.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.roi_fraction <= 1:
            raise ValueError(f"capacity.roi_fraction must lie in (0, 1], got "
                             f"{self.roi_fraction!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CapacityConfig:
        return cls(**{k: float(v) for k, v in (values or {}).items()})


def read_slopes(paths: Sequence[str | Path]) -> dict[str, float]:
    """Per-stage log-log slopes of time against event size from scaling benchmark JSONs (the
    first file that measured a stage wins; missing files are skipped)."""
    slopes: dict[str, float] = {}
    for path in map(Path, paths):
        if not path.is_file():
            log.warning("capacity plan: no scaling benchmark %s; its stages scale linearly", path)
            continue
        data = json.loads(path.read_text())
        for key in _SLOPE_KEYS:
            for stage, slope in (data.get(key) or {}).items():
                slopes.setdefault(stage, float(slope))
    return slopes


def device_kind(stages: Sequence[Mapping[str, Any]]) -> str | None:
    """"CPU core", "GPU", or None (FPGA emulation: nothing to plan) for a pipeline's stages."""
    devices = [str(s["device"]) for s in stages]
    if any("fpga" in d.lower() for d in devices):
        return None
    return "GPU" if any(runs_on_gpu(d) for d in devices) else "CPU core"


def _scaled_seconds(stages: Sequence[Mapping[str, Any]], size: float, to_size: float,
                    slopes: Mapping[str, float]) -> float:
    return sum(float(s["median_s"]) * (to_size / size) ** slopes.get(s["stage"], 1.0)
               for s in stages)


def plan(pipelines: Sequence[Mapping[str, Any]], config: CapacityConfig,
         slopes: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per pipeline: device kind, measured and extrapolated seconds per event, and the
    devices needed for full-scan and RoI tracking (None where nothing can be planned)."""
    rows = []
    for p in pipelines:
        stages = p["stages"]
        size = float(p["mean_sizes"].get("spacepoints") or 0)
        kind = device_kind(stages)
        row: dict[str, Any] = {"pipeline": p["pipeline"], "device": kind,
                               "spacepoints": size}
        if kind is None or size <= 0 or not stages:
            rows.append({**row, "reason": "FPGA stages ran in C simulation (emulation): no "
                         "measured device time to plan with" if kind is None
                         else "no stage timings"})
            continue
        measured = sum(float(s["median_s"]) for s in stages)
        full = _scaled_seconds(stages, size, config.spacepoints, slopes)
        roi = _scaled_seconds(stages, size, config.spacepoints * config.roi_fraction, slopes)
        rows.append({
            **row,
            "seconds_measured": measured,
            "devices_full_scan_measured_size": config.full_scan_hz * measured,
            "seconds_extrapolated": full,
            "devices_full_scan": config.full_scan_hz * full,
            "seconds_roi": roi,
            "devices_roi": config.roi_hz * roi,
            "slopes": {s["stage"]: slopes.get(s["stage"]) for s in stages},
        })
    return rows
