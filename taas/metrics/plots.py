"""Performance plots drawn from a ``metrics.json`` summary alone.

Plots are made from the summary (not from per-event arrays) so that a report can redraw them
from the file a run left behind. Figures are built with ``matplotlib.figure.Figure``, which
renders with Agg and touches no global pyplot state, so this is safe in worker processes and
on machines without a display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from taas.errors import InputError


def _nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64)


def _style_note(summary: Mapping[str, Any]) -> str:
    m = summary.get("matching", {})
    return (f"{m.get('style', '?')} matching, pT >= {m.get('pt_min', '?')} GeV, "
            f"|eta| <= {m.get('eta_max', '?')}, >= {m.get('min_particle_measurements', '?')} "
            f"meas., {'primaries' if m.get('primary_only') else 'all particles'}")


def plot_efficiency(summary: Mapping[str, Any], var: str, path: str | Path,
                    label: str | None = None) -> Path:
    """Efficiency vs ``var`` ("pt" or "eta") with binomial (Clopper-Pearson) error bars."""
    if var not in ("pt", "eta"):
        raise InputError(f"plot_efficiency: var {var!r} is not one of ['eta', 'pt']")
    h = summary[f"efficiency_vs_{var}"]
    edges = np.asarray(h["edges"], np.float64)
    eff, lo, hi = _nan(h["efficiency"]), _nan(h["low"]), _nan(h["high"])
    ok = np.isfinite(eff)
    centre = 0.5 * (edges[1:] + edges[:-1])
    half = 0.5 * np.diff(edges)
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    ax.errorbar(centre[ok], eff[ok], xerr=half[ok],
                yerr=np.vstack([eff[ok] - lo[ok], hi[ok] - eff[ok]]),
                fmt="o", color="black", ms=4, label=label or "track efficiency")
    ax.set(xlabel="particle $p_T$ [GeV]" if var == "pt" else r"particle $\eta$",
           ylabel="efficiency", ylim=(0.0, 1.05), xlim=(edges[0], edges[-1]))
    if var == "pt" and edges[0] > 0:
        ax.set_xscale("log")
    m = summary.get("matching", {})
    cuts = [m.get("pt_min")] if var == "pt" else [-m.get("eta_max", np.nan), m.get("eta_max")]
    for c in cuts:
        if c is not None and np.isfinite(c):
            ax.axvline(c, color="grey", ls="--", lw=1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(_style_note(summary), fontsize=9)
    return _save(fig, path)


def plot_pulls(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Pull histograms of every fitted parameter, with the unit Gaussian they should follow."""
    pulls = summary.get("pulls")
    if not pulls:
        raise InputError("plot_pulls: the summary holds no pulls")
    edges = np.asarray(summary["pull_bins"], np.float64)
    centre = 0.5 * (edges[1:] + edges[:-1])
    width = np.diff(edges)
    names = list(pulls)
    ncols = 3
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(4 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        counts = np.asarray(pulls[name]["pull_hist"], np.float64)
        ax.stairs(counts, edges, color="C0")
        n = counts.sum()
        gauss = n * width * np.exp(-0.5 * centre**2) / np.sqrt(2 * np.pi)
        ax.plot(centre, gauss, color="C3", lw=1, label="N(0, 1)")
        mean, std = pulls[name].get("pull_mean"), pulls[name].get("pull_std")
        text = f"n={pulls[name].get('pull_n', 0)}"
        if mean is not None and std is not None:
            text += f"\nmean={mean:.2f}\nstd={std:.2f}"
        ax.text(0.03, 0.95, text, transform=ax.transAxes, va="top", fontsize=8)
        ax.set(xlabel=f"pull {name}")
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(summary: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Every plot the summary supports: efficiency vs pT and eta, and pulls when present."""
    out = Path(out_dir)
    written = [plot_efficiency(summary, "pt", out / "efficiency_vs_pt.png"),
               plot_efficiency(summary, "eta", out / "efficiency_vs_eta.png")]
    if summary.get("pulls"):
        written.append(plot_pulls(summary, out / "pulls.png"))
    return written


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
