"""The report's service-option study: where the server boundary goes, what each choice costs.

Reads the study JSONs (``taas.service.study``, one per pipeline, written by the served-vs-direct
job) and gives the report two sections (the option x pipeline table with the device each stage
ran on, and the server's queue vs compute time per model from its Prometheus counters) and two
plots (overhead against direct, throughput against client concurrency).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from taas.report.sections import Section, Table

#: Plot keys of this module (files ``plots/<key>.png``).
PLOTS = ("service_options_overhead", "service_options_throughput")
TITLE = "Service options"
QUEUE_TITLE = "Server queue vs compute time"


def collect(paths: Sequence[Path]) -> dict[str, Any]:
    """The studies, in the order given (the report's pipeline order)."""
    return {"pipelines": [json.loads(Path(p).read_text()) for p in paths]}


def _studies(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((data.get("service_options") or {}).get("pipelines", []))


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f}"


def _where(row: Mapping[str, Any]) -> str:
    served = [p for p in row["placement"] if p["where"] == "served"]
    if not served:
        return "none (in-process)"
    if [p["backend"] for p in served] == ["triton"]:
        return f"whole pipeline ({served[0]['stage']})"
    if len(served) == len(row["placement"]) and len(served) > 1:
        return "every stage"
    return ", ".join(p["stage"] for p in served)


def _throughput_cells(row: Mapping[str, Any], concurrency: Sequence[int]) -> list[str]:
    points = {p["concurrency"]: p for p in row["throughput"]}
    cells = []
    for c in concurrency:
        p = points.get(c)
        cells.append("-" if p is None else f"{p['events_per_s']:.2f}" +
                     (f" ({p['errors']} errors)" if p["errors"] else ""))
    return cells


def _equal(row: Mapping[str, Any]) -> str:
    if row["key"] == "S0":
        return "(reference)"
    if row["outputs_identical"]:
        return "identical"
    if row["outputs_equal"]:
        return "within tolerance: " + ", ".join(row["not_identical"][:4])
    return "NO: " + "; ".join(row["differences"][:3])


def section(data: Mapping[str, Any]) -> Section:
    """The option x pipeline table, the placement table and the two plots."""
    studies = _studies(data)
    concurrency = sorted({c for s in studies for c in s["concurrency"]})
    text = [
        "The same events through six placements of the server boundary (the ExaTrkX-as-a-"
        "service study's S0-S4 and the whole-pipeline 'custom backend' model): S0 direct "
        "(in-process, no server); S1 the neural-network stages served (taas' graph "
        "construction holds embedding, FRNN and filter in one stage, so the FRNN is served "
        "with them; the GNN); S2 the graph building served; S3 every stage its own served "
        "model, chained by the client; S4 the Triton ensemble of the stage models, chained by "
        "the server; custom the pipeline in one model. Served parts ran on one local "
        "tritonserver (one instance per model).",
        "Time: median per event, options alternating event by event (order reversed on "
        "alternate events and passes) so drifting load hits all alike; overhead = median / "
        "direct median. Bytes: tensor bytes of every served call per event, request + "
        "response: what would cross a network. On loopback they travelled through POSIX "
        "shared memory (the gRPC messages carry region names only). Throughput: c client "
        "threads in one process, each with its own chain, bounded by a number of events; the "
        "options are swept one after another, so the overhead column (alternating, same "
        "events) is the drift-fair comparison, the sweep shows how each option scales. "
        "Outputs are compared with direct's on every timed event (integers exactly, floats "
        "within the tolerance stated per pipeline).",
    ]
    rows, placement = [], []
    for s in studies:
        cells = s["cells_per_event"]
        size = f"{np.mean(cells):,.0f} cells x {s['events']} event(s)"
        notes = [] if s["warmup"] else ["no warm-up (emulation budget)"]
        for r in s["options"]:
            rows.append([s["pipeline"], f"{r['key']} {r['name']}", _where(r),
                         f"{r['median_s'] * 1e3:.1f}",
                         "n/a" if r["overhead_vs_direct"] is None else
                         f"{r['overhead_vs_direct']:.3f}",
                         _mb(r["bytes_per_event"]), f"{r['served_calls_per_event']:.0f}",
                         *_throughput_cells(r, concurrency), _equal(r),
                         "; ".join([size, *notes])])
            placement += [[s["pipeline"], r["key"], p["stage"], p["where"], p["device"]]
                          for p in r["placement"]]
        for skipped in s["skipped"]:
            text.append(f"{s['pipeline']}: {skipped['key']} ({skipped['name']}) not measured: "
                        f"{skipped['reason']}.")
        tol = s["tolerance"]
        text.append(f"{s['pipeline']}: {s['events']} event(s) x {s['repeats']} pass(es), "
                    f"transport {s['transport']}, float tolerance rtol {tol['rtol']:g} / atol "
                    f"{tol['atol']:g}, {s['requests']} events per throughput point"
                    + ("" if s["concurrency"] else " (no throughput sweep)") + ".")
    if not studies:
        text.append("Not measured in this run.")
        return Section(TITLE, text)
    header = ["pipeline", "option", "served", "ms/event (median)", "x direct", "MB/event moved",
              "served calls/event", *(f"events/s c={c}" for c in concurrency),
              "outputs vs direct", "events"]
    return Section(TITLE, text, [
        Table(header, rows),
        Table(["pipeline", "option", "stage or model", "where", "ran on"], placement)],
        list(PLOTS))


def queue_section(data: Mapping[str, Any]) -> Section:
    """Per served model: requests, ms queued and ms computing per request, from Prometheus."""
    text = ["Triton's own Prometheus counters (nv_inference_queue_duration_us, "
            "nv_inference_compute_{input,infer,output}_duration_us, "
            "nv_inference_request_success), scraped from the server's metrics port before and "
            "after each pipeline's service-option throughput sweep; per request = difference / "
            "requests. An ensemble queues nothing itself: its compute time spans its stage models' "
            "queue and compute, and its requests also count in them; a stage model's requests "
            "come from S1-S4 together. Client threads outnumbering model instances wait in the "
            "queue."]
    rows = []
    for s in _studies(data):
        prom = s.get("prometheus") or {}
        if "rows" not in prom:
            text.append(f"{s['pipeline']}: not scraped: {prom.get('reason', 'no data')}.")
            continue
        for r in prom["rows"]:
            share = r["queue_fraction"]
            rows.append([s["pipeline"], r["model"], str(r["requests"]),
                         f"{r['queue_ms']:.2f}", f"{r['compute_ms']:.2f}",
                         f"{r['compute_infer_ms']:.2f}",
                         "n/a" if share is None else f"{share:.1%}", str(r["failures"])])
    return Section(QUEUE_TITLE, text, [Table(
        ["pipeline", "model", "requests", "queue ms/request", "compute ms/request",
         "of which infer", "queue share", "failures"], rows)] if rows else [])


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def overhead_plot(data: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars: median time per event over direct's, per pipeline and option."""
    studies = _studies(data)
    # the study's own option order (S0, S1, ...): the pipeline with the most options first
    keys = list(dict.fromkeys(r["key"] for s in sorted(studies, key=lambda s: -len(s["options"]))
                              for r in s["options"]))
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(keys))
    for k, key in enumerate(keys):
        xs, ys = [], []
        for i, s in enumerate(studies):
            row = next((r for r in s["options"] if r["key"] == key), None)
            if row is not None and row["overhead_vs_direct"] is not None:
                xs.append(i + (k - (len(keys) - 1) / 2) * width)
                ys.append(row["overhead_vs_direct"])
        ax.bar(xs, ys, width, label=key)
    if studies:
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_xticks(range(len(studies)), [s["pipeline"] for s in studies])
        ax.set_ylabel("median time per event / direct")
        ax.legend(fontsize=8, ncols=3)
        ax.grid(alpha=0.3, axis="y")
    else:
        ax.text(0.5, 0.5, "no service-option study", ha="center", transform=ax.transAxes)
    ax.set_title(f"Service options: overhead against direct\n{data.get('short_size_text', '')}",
                 fontsize=9)
    return _save(fig, path)


def throughput_plot(data: Mapping[str, Any], path: Path) -> Path:
    """Events/s against client threads, one panel per pipeline with a sweep, one line per
    option."""
    studies = [s for s in _studies(data) if s["concurrency"]]
    fig = Figure(figsize=(4 * max(1, len(studies)), 3.8))
    axes = [fig.add_subplot(1, max(1, len(studies)), i + 1) for i in range(max(1,
                                                                               len(studies)))]
    for ax, s in zip(axes, studies, strict=False):
        for r in s["options"]:
            pts = sorted((p["concurrency"], p["events_per_s"]) for p in r["throughput"])
            ax.plot([c for c, _ in pts], [t for _, t in pts], "o-", label=r["key"])
        ax.set_xticks(s["concurrency"])
        ax.set_xlabel("client threads")
        ax.set_ylabel("events / s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{s['pipeline']} ({np.mean(s['cells_per_event']):,.0f} cells/event)",
                     fontsize=9)
    if not studies:
        axes[0].text(0.5, 0.5, "no service-option throughput sweep", ha="center",
                     transform=axes[0].transAxes)
    return _save(fig, path)


def write_plots(data: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Both plots as ``out_dir/<key>.png``."""
    return {"service_options_overhead": overhead_plot(
                data, Path(out_dir) / "service_options_overhead.png"),
            "service_options_throughput": throughput_plot(
                data, Path(out_dir) / "service_options_throughput.png")}
