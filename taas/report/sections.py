"""The report's content as renderer-neutral sections: text, tables and plot references.

Markdown and HTML are two renderings of the same list, so the two files can never disagree
about a number; every formatting decision (units, rounding, the honesty labels) lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Required section titles, in order (tests check the rendered files for them).
TITLES = ("Events", "Throughput and latency", "Served vs direct", "Service options",
          "Server queue vs compute time", "Per-stage time",
          "Throughput vs concurrency and model instances", "Physics performance",
          "Event-filter capacity planning", "Devices", "Software versions and configuration")


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # keys of taas.report.plots.PLOTS
    code: str = ""


def _f(value: float | None, pattern: str = ".3g") -> str:
    return "n/a" if value is None else format(value, pattern)


def _rate(physics: Mapping[str, Any], key: str) -> str:
    value = physics.get(key)
    lo, hi = physics.get(f"{key}_err") or (None, None)
    if value is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{value:.4f}"
    return f"{value:.4f} (-{lo:.4f} +{hi:.4f})"


def _events(data: Mapping[str, Any]) -> Section:
    ev = data["events"]
    rows = [[str(e.get("event_id")), f"{e.get('cells', 0):,}", f"{e.get('hits', 0):,}",
             f"{e.get('particles', 0):,}"] for e in ev["per_event"]]
    sizes = ev["mean_sizes"]
    return Section("Events", [
        f"Source: `{ev['source']}` ({ev['format']}, {ev['modules']} detector modules).",
        "Mean reconstructed sizes per event: " + ", ".join(
            f"{v:,.0f} {k}" for k, v in sizes.items()) + "."],
        [Table(["event", "cells", "hits", "particles"], rows)])


def _served_label(service: Mapping[str, Any] | None) -> str:
    """Served, or what happened instead: a fallback is never shown as served."""
    if service and service.get("fell_back_to_direct"):
        return (f"served (per-stage models); fell back to direct for "
                f"{service['fell_back_to_direct']} of {service['runs']} event runs (the "
                "warm-up run included)")
    return "served (per-stage models)"


def _throughput_latency(data: Mapping[str, Any]) -> Section:
    rows = []
    for p in data["pipelines"]:
        lat = p["latency_ms"]
        rows.append([p["pipeline"], f"{p['mode']} (in-process)" if p["mode"] == "direct"
                     else _served_label(p.get("service")), _f(p["events_per_s"], ".2f"),
                     _f(lat.get("p50"), ".1f"), _f(lat.get("p95"), ".1f"),
                     _f(lat.get("p99"), ".1f"), str(p["events"])])
    for t in data["throughput"]:
        lat = t["latency_ms"]
        inst = t["instances"] if t["instances"] else "server's"
        rows.append([t["pipeline"], f"served, {inst} instance(s), concurrency "
                     f"{t['concurrency']}", _f(t["throughput"], ".2f"),
                     _f(lat.get("p50"), ".1f"), _f(lat.get("p95"), ".1f"),
                     _f(lat.get("p99"), ".1f"), f"{t['requests']} req"])
    return Section("Throughput and latency", [
        f"Event size: {data['event_size_text']}. Direct rows time each event once through "
        "the in-process pipeline (after one untimed warm-up event); served rows are measured by "
        "the load generator against the whole-pipeline model. Latency is per event.",
        f"Machine: {data['machine']['cpu_count']} cores, 1-minute load average during the "
        f"measurements {_loads(data)}."],
        [Table(["pipeline", "how", "events/s", "p50 ms", "p95 ms", "p99 ms", "events"], rows)])


def _loads(data: Mapping[str, Any]) -> str:
    loads = data["machine"]["load_1min_during_measurements"]
    return f"{min(loads):.2f}-{max(loads):.2f}" if loads else "not recorded"


def _served_vs_direct(data: Mapping[str, Any]) -> Section:
    rows = []
    for p in data["pipelines"]:
        c = p["served_vs_direct"]
        if not c:
            continue
        rows.append([p["pipeline"], f"{c['direct_s_per_event'] * 1e3:.1f}",
                     f"{c['served_s_per_event'] * 1e3:.1f}", _f(c["ratio"], ".3f"),
                     f"{c['events']} x {c['repeats']}", c["transport"],
                     "yes" if c["outputs_identical"] else
                     "NO: " + ", ".join(c.get("differing_outputs", [])[:6])])
    text = ["Same events, same process, alternating direct and served event by event; served "
            "is the whole-pipeline model on a local tritonserver (one instance). Ratio = served "
            "/ direct time per event (target <= 1.05 on medium events)."]
    if not rows:
        text.append("Not measured in this run.")
    return Section("Served vs direct", text, [Table(
        ["pipeline", "direct ms/event", "served ms/event", "ratio", "events x passes",
         "transport", "outputs identical"], rows)] if rows else [])


def _stages(data: Mapping[str, Any]) -> Section:
    rows = [[p["pipeline"], s["stage"], s["backend"], s["ran_on"], f"{s['median_s'] * 1e3:.2f}"]
            for p in data["pipelines"] for s in p["stages"]]
    return Section("Per-stage time", [f"Median per event, {data['event_size_text']}."],
                   [Table(["pipeline", "stage", "backend", "ran on", "median ms/event"], rows)],
                   ["stage_breakdown"])


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _copies(data: Mapping[str, Any]) -> Section | None:
    """Host <-> device copies per event of the pipelines that ran stages on the gpu backend
    (None when none did): per stage, the device it ran on, the kind of crossing, tensors and
    bytes each way and the time in them (medians over events)."""
    shown = [p for p in data["pipelines"]
             if p.get("copies") and any(backend == "gpu" for _, backend in p["steps"])]
    if not shown:
        return None
    rows = [[p["pipeline"], c["stage"], c["device"], c["kind"],
             f"{c['to_device']:.0f} ({_bytes(c['to_device_bytes'])})",
             f"{c['to_host']:.0f} ({_bytes(c['to_host_bytes'])})",
             f"{c['transfer_seconds'] * 1e3:.3f}"]
            for p in shown for c in p["copies"]]
    residency = ", ".join(f"{p['pipeline']}: {'on' if p.get('device_residency') else 'off'}"
                          for p in shown if p.get("device_residency") is not None)
    text = [f"Median per event, {data['event_size_text']}. A *copy* moves bytes between host "
            "memory and a device (CUDA, or an OpenCL buffer); a *handover* is a numpy <-> "
            "torch crossing on the CPU device, where memory is shared and nothing is copied "
            "(no bytes). Copies a stage's output needs later (when the next reader is on the "
            "host) are counted with the stage that produced it; *not counted* marks a stage "
            "that does not count its copies."]
    if residency:
        text.append(f"Device residency (tensors kept on the device between stages): "
                    f"{residency}.")
    return Section("Host<->device copies per event", text, [Table(
        ["pipeline", "stage", "device", "kind", "to device: tensors (bytes)",
         "to host: tensors (bytes)", "ms in copies"], rows)])


def _curves(data: Mapping[str, Any]) -> Section:
    text = [f"Served whole-pipeline model; each point is a bounded number of requests "
            f"(`requests` = {data['config'].get('requests')}) with the given number in flight. "
            f"The machine has {data['machine']['cpu_count']} cores (dotted line): beyond that, "
            "more instances cannot add throughput."]
    if not data["throughput"]:
        text.append("No throughput measured in this run.")
    return Section("Throughput vs concurrency and model instances", text, [],
                   ["throughput_vs_concurrency", "throughput_vs_instances"])


def _physics(data: Mapping[str, Any]) -> Section:
    rows = [[p["pipeline"], _rate(p["physics"], "efficiency"), _rate(p["physics"], "fake_rate"),
             _rate(p["physics"], "duplicate_rate"), str(p["physics"]["n_tracks"]),
             str(p["physics"]["n_fiducial_particles"])] for p in data["pipelines"]]
    return Section("Physics performance", [
        f"{data['matching_text']}; errors are 68% binomial intervals."],
        [Table(["pipeline", "efficiency", "fake rate", "duplicate rate", "tracks",
                "fiducial particles"], rows)], ["efficiency_vs_pt", "efficiency_vs_eta"])


def _capacity(data: Mapping[str, Any]) -> Section:
    cap = data["capacity"]
    cfg = cap["config"]
    text = [
        f"Devices needed for the ATLAS event filter: full-scan tracking at "
        f"{cfg['full_scan_hz'] / 1e3:.0f} kHz and region-of-interest tracking at "
        f"{cfg['roi_hz'] / 1e6:.3g} MHz on {cfg['roi_fraction']:.0%} of each event, with "
        f"devices = rate x seconds per event on one device (one event at a time, perfect "
        f"scaling over devices, no I/O or data preparation).",
        "'measured': this run's direct time per event at the events' own size. "
        f"'extrapolated': scaled stage by stage to {cfg['spacepoints']:,.0f} space points "
        "per event (ITk) with each stage's measured log-log slope of time against event size "
        "(listed; 1 = assumed linear, where no benchmark measured the stage) from "
        + (", ".join(f"`{Path(p).name}`" for p in cap["slopes_from"]) or "no benchmark")
        + ": an extrapolation, not a measurement.",
        "A device is a CPU core where every stage ran on a CPU, a GPU where the accelerator "
        "stages ran on CUDA; FPGA stages that ran in C simulation are not planned (emulation "
        "time is not hardware time).",
    ]
    rows = []
    for r in cap["rows"]:
        if "reason" in r:
            rows.append([r["pipeline"], "-", f"{r['spacepoints']:,.0f}", "-", "-", "-", "-",
                         "-", r["reason"]])
            continue
        slopes = ", ".join(f"{k} {_f(v, '.2f') if v is not None else '1 (assumed)'}"
                           for k, v in r["slopes"].items())
        rows.append([r["pipeline"], r["device"], f"{r['spacepoints']:,.0f}",
                     f"{r['seconds_measured']:.3g}", f"{r['devices_full_scan_measured_size']:,.0f}",
                     f"{r['seconds_extrapolated']:.3g}", f"{r['devices_full_scan']:,.0f}",
                     f"{r['devices_roi']:,.0f}", slopes])
    return Section("Event-filter capacity planning", text, [Table(
        ["pipeline", "device", "space points (measured)", "s/event measured",
         "devices full scan (measured size)", "s/event extrapolated",
         "devices full scan (extrapolated)", "devices RoI (extrapolated)", "slopes used"],
        rows)])


def _fpga_model(data: Mapping[str, Any]) -> Section | None:
    model = data.get("fpga_model")
    if not model:
        return None
    a, device = model["assumptions"], model["device"]
    text = [
        f"**{model['label']}.** The fpga pipeline's times above are C-simulation (emulation) "
        "times on this CPU; these are a model of the same blocks on hardware, from layer sizes, "
        f"reuse factor and clock (`{Path(model['source']).name}`): {device['name']}, "
        f"{a['clock_mhz']:.0f} MHz, reuse factor {a['reuse_factor']}, {a['weight_bits']}-bit "
        f"weights, {a['activation_bits']}-bit data, {a['device_fill']:.0%} of the device "
        "usable. Events/s assume the stages stream (the slowest stage sets the rate).",
    ]
    rows = []
    for p in model["per_preset"]:
        stages = ", ".join(f"{k} {v:,.0f}" for k, v in p["stage_time_us"].items())
        rate = p["events_per_s_per_device"]
        rows.append([p["preset"], f"{p['workload']['spacepoints']:,.0f}", stages,
                     f"{p['event_latency_us'] / 1e3:.2f}", f"{rate:,.1f}",
                     f"{150e3 / rate:,.0f}" if rate else "n/a",
                     "yes" if p["fits_device"] else
                     f"no ({p['chain_dsp_per_copy']:,} DSPs for one chain)"])
    return Section("FPGA hardware model (modelled, not measured)", text, [Table(
        ["preset", "space points", "modelled stage time (us)", "latency ms", "events/s per device",
         "devices at 150 kHz", "fits the device"], rows)])


def _devices(data: Mapping[str, Any]) -> Section:
    rows = [[p["pipeline"], s["stage"], s["backend"], s["ran_on"]]
            for p in data["pipelines"] for s in p["stages"]]
    text = ["The device each stage reported running on (not the one asked for)."]
    for p in data["pipelines"]:
        text += [f"{p['pipeline']}: {note}" for note in p["notes"]]
    return Section("Devices", text, [Table(["pipeline", "stage", "backend", "device"], rows)])


def _models_text(pipeline: str, models: Mapping[str, Any]) -> str:
    """One line on where a pipeline's trained models came from and how they validated."""
    train = models.get("training") or {}
    data = (f"{train.get('train_events', '?')} `{train.get('preset', '?')}` events, seed "
            f"{train.get('train_seed', train.get('seed', '?'))}")
    gnn = (models.get("validation") or {}).get("gnn") or {}
    scores = (f"; validation edge efficiency {gnn['efficiency']:.3f}, purity "
              f"{gnn['purity']:.3f} after the GNN" if "efficiency" in gnn else "")
    return (f"{pipeline}: models `{models.get('source')}` for "
            f"{', '.join(models.get('stages', []))}, trained on {data}{scores}.")


def _versions(data: Mapping[str, Any]) -> Section:
    rows = [[k, v] for k, v in data["versions"].items()]
    text = [f"Platform: {data['machine']['platform']} ({data['machine']['processor']}), "
            f"generated {data['generated']}."]
    text += [_models_text(p["pipeline"], p["models"]) for p in data["pipelines"]
             if p.get("models") and p["models"].get("stages")]
    settings = [[p["pipeline"], stage, json.dumps(values, sort_keys=True)]
                for p in data["pipelines"] for stage, values in p.get("stage_configs", {}).items()]
    tables = [Table(["software", "version"], rows)]
    if settings:
        tables.append(Table(["pipeline", "stage", "settings (defaults elsewhere)"], settings))
    return Section("Software versions and configuration", text, tables,
                   code=json.dumps({"config": data["config"], "plan": data["plan"]}, indent=2))


def sections(data: Mapping[str, Any]) -> list[Section]:
    from taas.report import service_options  # builds on Section and Table of this module

    return [_events(data), _throughput_latency(data), _served_vs_direct(data),
            service_options.section(data), service_options.queue_section(data), _stages(data),
            *filter(None, [_copies(data)]), _curves(data), _physics(data), _capacity(data),
            *filter(None, [_fpga_model(data)]), _devices(data), _versions(data)]
