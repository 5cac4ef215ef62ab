"""Assemble the workflow report: one data dict (report.json), then Markdown and HTML from it.

Everything shown is read from files the workflow's jobs wrote (timings, metrics, served-vs-direct
and throughput measurements), so the report can be rebuilt without rerunning anything, and every
time is shown with the event sizes it was measured on and the device each stage actually ran on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from taas.pipeline.timings import copies_by_stage, read_timings, seconds_per_event
from taas.report import capacity, plots, service_options
from taas.report.html import to_html
from taas.report.markdown import to_markdown
from taas.stages.devices import runs_on_gpu

log = logging.getLogger(__name__)

#: Distributions whose versions the report states (absent ones are reported as such).
VERSIONED = ("taas", "numpy", "numba", "scipy", "torch", "pyopencl", "snakemake",
             "tritonclient", "nvidia-pytriton", "matplotlib", "acts")
#: The tritonserver release inside each nvidia-pytriton version (notes/triton-server.md).
TRITONSERVER_OF_PYTRITON = {"0.7.0": "2.51.0"}
RATES = ("efficiency", "fake_rate", "duplicate_rate")
SIZE_KEYS = ("cells", "measurements", "spacepoints")


@dataclass
class ReportInputs:
    """The files one report is made of (paths), plus the configuration and resolved plan."""

    config: dict[str, Any]
    plan: dict[str, Any]
    summary: Path
    info: Path
    reco: list[Path]
    metrics: list[Path]
    compare: list[Path] = field(default_factory=list)
    throughput: list[Path] = field(default_factory=list)
    models: list[Path] = field(default_factory=list)  # the models rule's directories
    scaling: list[Path] = field(default_factory=list)  # scaling benchmarks: per-stage slopes
    fpga_model: Path | None = None  # modelled FPGA hardware figures (fpga_hardware_model.json)
    service_options: list[Path] = field(default_factory=list)  # taas.service.study results


def _read(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    pytriton = out.get("nvidia-pytriton", "")
    out["tritonserver"] = TRITONSERVER_OF_PYTRITON.get(pytriton, "unknown")
    return out


def _per_event_seconds(reco: Path) -> list[float]:
    """Total pipeline time of each event, from the stage timings."""
    return seconds_per_event(read_timings(reco))


def _latency(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    if not ms.size:
        return {}
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)} | {
        "mean": float(ms.mean())}


def _stage_rows(summary: dict[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for stage in summary["stages"]:
        honest = stage["device"]
        if stage["backend"] == "gpu" and not runs_on_gpu(stage["device"]):
            honest = f"{stage['device']} — gpu backend on CPU device"
        rows.append({**stage, "ran_on": honest})
    if any("gpu backend on CPU device" in n for n in notes):
        log.info("report flags gpu stages that ran on a CPU device")
    return rows


def _pipeline_entry(summary: dict[str, Any], reco: Path, metrics: dict[str, Any],
                    plan: dict[str, Any], compare: dict[str, Any] | None,
                    models: dict[str, Any] | None) -> dict[str, Any]:
    run = _read(Path(reco) / "run.json")
    per_event = _per_event_seconds(reco)
    mean_s = float(np.mean(per_event)) if per_event else None
    notes = list(plan.get("notes", []))
    return {
        "pipeline": summary["pipeline"],
        "mode": run.get("mode", "direct"),
        "service": run.get("service"),  # served runs: failovers, "fell back to direct"
        "steps": run["steps"],
        # what the run started from ("cells", or "spacepoints" without cells), the stages
        # that input made unnecessary, and the GNN model set that ran
        "input": run.get("input", "cells"),
        "skipped_stages": run.get("skipped_stages", []),
        "gnn_models": run.get("gnn_models"),
        "notes": notes,
        "events": summary["events"],
        "mean_sizes": summary["mean_sizes"],
        "events_per_s": (1.0 / mean_s) if mean_s else None,
        "latency_ms": _latency(per_event),
        "stages": _stage_rows(summary, notes),
        # host <-> device copies per event, per stage (taas.stages.transfers)
        "copies": copies_by_stage(read_timings(reco)),
        "device_residency": run.get("device_residency"),
        "served_vs_direct": compare,
        "stage_configs": run.get("stage_configs", {}),
        "models": models,
        "physics": {
            **{k: metrics.get(k) for k in (*RATES, "n_tracks", "n_fiducial_particles")},
            **{f"{k}_err": [metrics.get(f"{k}_err_low"), metrics.get(f"{k}_err_high")]
               for k in RATES},
            "efficiency_vs_pt": metrics.get("efficiency_vs_pt"),
            "efficiency_vs_eta": metrics.get("efficiency_vs_eta"),
        },
        "matching": metrics.get("matching", {}),
    }


def _capacity(pipelines: list[dict[str, Any]], inputs: ReportInputs) -> dict[str, Any]:
    config = capacity.CapacityConfig.from_mapping(inputs.config.get("capacity"))
    slopes = capacity.read_slopes(inputs.scaling)
    return {"config": dataclasses.asdict(config), "slopes_from": [str(p) for p in inputs.scaling],
            "rows": capacity.plan(pipelines, config, slopes)}


def _fpga_model(pipelines: list[dict[str, Any]], path: Path | None) -> dict[str, Any] | None:
    """The modelled FPGA figures, when a pipeline ran FPGA stages (in emulation) and the model's
    results exist: its label, assumptions and per-preset stage times and events/s."""
    if path is None or not Path(path).is_file() or not any(
            s["backend"] == "fpga" for p in pipelines for s in p["stages"]):
        return None
    model = _read(path)
    return {key: model.get(key) for key in ("label", "assumptions", "device", "per_preset",
                                            "published_design_check")} | {"source": str(path)}


def collect(inputs: ReportInputs) -> dict[str, Any]:
    """The report's data: everything report.json holds and the plots and pages are drawn from."""
    summaries = {s["pipeline"]: s for s in _read(inputs.summary)}
    compares = {c["pipeline"]: c for c in (_read(p) for p in inputs.compare)}
    models = {m["pipeline"]: m for m in (_read(Path(p) / "models.json") for p in inputs.models)}
    pipelines = []
    for reco, metrics_path in zip(inputs.reco, inputs.metrics, strict=True):
        name = _read(Path(reco) / "run.json")["pipeline"]
        pipelines.append(_pipeline_entry(summaries[name], reco, _read(metrics_path),
                                         inputs.plan.get(name, {}), compares.get(name),
                                         models.get(name)))
    throughput = []
    loads = []
    for path in inputs.throughput:
        run = _read(path)
        loads += [run["machine_before"]["loadavg"][0], run["machine_after"]["loadavg"][0]]
        for point in run["points"]:
            throughput.append({"pipeline": run["pipeline"], "instances": run["instances"],
                               "mean_cells": run["mean_cells"], **point})
    for c in compares.values():
        loads += [c["machine_before"]["loadavg"][0], c["machine_after"]["loadavg"][0]]
    info = _read(inputs.info)
    sizes = pipelines[0]["mean_sizes"] if pipelines else {}
    size_text = ", ".join(f"{sizes[k]:,.0f} {k}" for k in SIZE_KEYS if k in sizes) + \
        f" per event (mean of {len(info.get('events', []))} events)"
    short = ", ".join(f"{sizes[k] / 1e3:.1f}k {k}" for k in SIZE_KEYS if k in sizes)
    matching = pipelines[0]["matching"] if pipelines else {}
    return {
        "title": "taas pipeline comparison",
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "events": {"source": info.get("directory"), "format": info.get("format"),
                   "modules": info.get("modules"), "per_event": info.get("events", []),
                   "mean_sizes": sizes},
        "event_size_text": size_text,
        "short_size_text": f"{short} per event",
        "matching_text": f"{matching.get('style', '?')} matching, pT > "
                         f"{matching.get('pt_min', '?')} GeV, |eta| < "
                         f"{matching.get('eta_max', '?')}",
        "pipelines": pipelines,
        "capacity": _capacity(pipelines, inputs),
        "fpga_model": _fpga_model(pipelines, inputs.fpga_model),
        "service_options": service_options.collect(inputs.service_options),
        "throughput": throughput,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "load_1min_during_measurements": loads},
        "versions": versions(),
        "config": inputs.config,
        "plan": inputs.plan,
    }


def write_report(inputs: ReportInputs, out_dir: str | Path) -> Path:
    """report.json, report.md, plots/*.png and the self-contained report.html in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = collect(inputs)
    images = plots.write_plots(data, out / "plots") | service_options.write_plots(
        data, out / "plots")
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str))
    (out / "report.md").write_text(to_markdown(data, {k: Path("plots") / v.name
                                                      for k, v in images.items()}))
    (out / "report.html").write_text(to_html(data, images))
    log.info("report written to %s", out)
    return out
