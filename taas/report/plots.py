"""The comparison plots of the workflow report, drawn from the report's own data dict.

Each function takes the dict that report.json holds, so the plots can be redrawn from that file
alone, and returns the PNG path. ``matplotlib.figure.Figure`` (Agg, no pyplot state) keeps this
safe in Snakemake jobs without a display.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rcParams
from matplotlib.figure import Figure

#: File names of the report's plots, in the order the report shows them.
PLOTS = ("stage_breakdown", "throughput_vs_concurrency", "throughput_vs_instances",
         "efficiency_vs_pt", "efficiency_vs_eta")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def stage_breakdown(data: Mapping[str, Any], path: Path) -> Path:
    """Stacked horizontal bars: median seconds per event of each stage, per pipeline."""
    fig = Figure(figsize=(8, 2.2 + 0.6 * max(1, len(data["pipelines"]))))
    ax = fig.add_subplot()
    names = [p["pipeline"] for p in data["pipelines"]]
    colours = itertools.cycle(rcParams["axes.prop_cycle"].by_key()["color"])
    palette: dict[str, Any] = {}
    for row, pipeline in enumerate(data["pipelines"]):
        left = 0.0
        for stage in pipeline["stages"]:
            key = f"{stage['stage']} ({stage['backend']})"
            if key not in palette:
                palette[key] = next(colours)
            ax.barh(row, stage["median_s"] * 1e3, left=left, color=palette[key], height=0.6,
                    label=key if key not in ax.get_legend_handles_labels()[1] else None)
            left += stage["median_s"] * 1e3
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("median time per event [ms] (direct, in-process)")
    ax.set_title(f"Per-stage time, {data['short_size_text']}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncols=4,
              frameon=False)
    return _save(fig, path)


def _points(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return data.get("throughput", [])


def _throughput_axes(ax: Any, series: Mapping[Any, list[tuple[int, float]]], xlabel: str,
                     ylabel: str) -> None:
    """Labels, integer ticks at the measured x values, zero-based y, legend and grid."""
    ax.set_xlabel(xlabel)
    ax.set_xticks(sorted({x for pts in series.values() for x, _ in pts}))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def throughput_vs_concurrency(data: Mapping[str, Any], path: Path) -> Path:
    """Events per second against requests in flight, one line per (pipeline, instances)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    series: dict[tuple[str, Any], list[tuple[int, float]]] = {}
    for p in _points(data):
        series.setdefault((p["pipeline"], p["instances"]), []).append(
            (p["concurrency"], p["throughput"]))
    for (pipeline, instances), pts in sorted(series.items(), key=str):
        pts.sort()
        label = f"{pipeline}, {instances if instances else 'server'} instance(s)"
        ax.plot([c for c, _ in pts], [t for _, t in pts], "o-", label=label)
    if not series:
        _empty(ax, "no throughput measured")
    else:
        _throughput_axes(ax, series, "concurrency (requests in flight)",
                         "events / s (served pipeline model)")
    ax.set_title(f"Throughput vs concurrency\n{data['short_size_text']}", fontsize=9)
    return _save(fig, path)


def throughput_vs_instances(data: Mapping[str, Any], path: Path) -> Path:
    """Events per second against model instances, one line per (pipeline, concurrency)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    series: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for p in _points(data):
        if p["instances"]:
            series.setdefault((p["pipeline"], p["concurrency"]), []).append(
                (p["instances"], p["throughput"]))
    for (pipeline, concurrency), pts in sorted(series.items()):
        pts.sort()
        ax.plot([i for i, _ in pts], [t for _, t in pts], "s-",
                label=f"{pipeline}, concurrency {concurrency}")
    if not series:
        _empty(ax, "no instance sweep (external server or none measured)")
    else:
        _throughput_axes(ax, series, "model instances", "events / s")
        ax.axvline(data["machine"]["cpu_count"], color="0.6", ls=":", lw=1)
    ax.set_title(f"Throughput vs model instances ({data['machine']['cpu_count']} cores)\n"
                 f"{data['short_size_text']}", fontsize=9)
    return _save(fig, path)


def efficiency(data: Mapping[str, Any], var: str, path: Path) -> Path:
    """Efficiency vs pT or eta of every pipeline on one plot, with binomial error bars."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for pipeline in data["pipelines"]:
        h = pipeline["physics"].get(f"efficiency_vs_{var}")
        if not h:
            continue
        edges = np.asarray(h["edges"], float)
        eff = np.array([np.nan if v is None else v for v in h["efficiency"]], float)
        lo = np.array([np.nan if v is None else v for v in h["low"]], float)
        hi = np.array([np.nan if v is None else v for v in h["high"]], float)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ok = np.isfinite(eff)
        ax.errorbar(centres[ok], eff[ok], yerr=[eff[ok] - lo[ok], hi[ok] - eff[ok]],
                    xerr=0.5 * (edges[1:] - edges[:-1])[ok], fmt="o", ms=3,
                    label=pipeline["pipeline"])
    if var == "pt":
        ax.set_xscale("log")
        ax.set_xlabel("particle pT [GeV]")
    else:
        ax.set_xlabel("particle eta")
    ax.set_ylabel("efficiency")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Efficiency vs {'pT' if var == 'pt' else 'eta'}\n{data['matching_text']}",
                 fontsize=9)
    return _save(fig, path)


def write_plots(data: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Every plot of ``PLOTS`` as ``out_dir/<name>.png``."""
    out_dir = Path(out_dir)
    return {
        "stage_breakdown": stage_breakdown(data, out_dir / "stage_breakdown.png"),
        "throughput_vs_concurrency": throughput_vs_concurrency(
            data, out_dir / "throughput_vs_concurrency.png"),
        "throughput_vs_instances": throughput_vs_instances(
            data, out_dir / "throughput_vs_instances.png"),
        "efficiency_vs_pt": efficiency(data, "pt", out_dir / "efficiency_vs_pt.png"),
        "efficiency_vs_eta": efficiency(data, "eta", out_dir / "efficiency_vs_eta.png"),
    }
